"""Print the nodes and actors of a running Ray cluster as one `INSPECT{json}` line.

    python -m cluster.inspect_cluster ADDRESS

Run by cluster/local_cluster.py's `inspect` in a fresh process (Ray reads the cluster's auth settings when
it is imported); the address arrives as an argument, never as code.
"""

import json
import sys

import ray

from search.driver.compat import HEAD_NODE_RESOURCE, gcs_actors


def main(address: str) -> None:
    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    nodes = [
        dict(
            node_id=n["NodeID"],
            alive=n["Alive"],
            ip=n["NodeManagerAddress"],
            head=n["Resources"].get(HEAD_NODE_RESOURCE, 0) > 0,
            resources={k: v for k, v in n["Resources"].items() if not k.startswith("node:")},
        )
        for n in ray.nodes()
    ]
    actors = [
        dict(
            actor_id=a["ActorID"],
            class_name=a.get("ActorClassName", ""),
            state=a.get("State"),
            pid=a.get("Pid"),
            node_id=(a.get("Address") or {}).get("NodeID"),
        )
        for a in gcs_actors().values()
    ]
    print("INSPECT" + json.dumps(dict(nodes=nodes, actors=actors)))


if __name__ == "__main__":
    main(sys.argv[1])
