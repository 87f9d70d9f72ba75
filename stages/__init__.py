"""The DAG: the only layer that reads params.yaml and writes DVC outputs."""
