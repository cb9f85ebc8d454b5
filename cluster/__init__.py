"""Running the search on a Ray cluster: launcher configs, KubeRay manifests, a local multi-node cluster.

See cluster/README.md. Python here: local_cluster.py (a multi-node cluster on 127.0.0.1; its command
line in cli.py, its process inspection in processes.py), loopback_ray.py (`ray start` kept on loopback)
and run_search.py (start-or-resume entry point).
"""
