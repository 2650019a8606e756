#!/usr/bin/env python3
"""The proxy's freshness through a lab, for any weft build (root).

In a lab holding N Services without endpoints, how long a Service created with `weft apply` (deleted with
`weft delete`) takes until the agent of every node has added (removed) its ClusterIP in the proxy's nftables
table, as `nft monitor` in each node's network namespace reports it. Timed from starting the command, as
`weft bench dns-change` times DNS. It drives only the weft CLI and nft, so a build from before the lab served
the Kubernetes API (its JSON-lines protocol) is measured the same way as today's: docs/benchmarks.md compares
them side by side.

    scripts/proxy-change.py WEFT [--services 10000] [--changes 30] [--nodes 2] [--lab NAME]
"""

import argparse
import json
import subprocess
import threading
import time


def cluster_ip(i, second_octet_base):
    """A ClusterIP of the lab's service range (10.96.0.0/12), given explicitly so the probe knows it; the bases
    used (97, 100) stay clear of 10.96.0.0/16, where the lab's own Services are (kube-dns is 10.96.0.10)."""
    return f"10.{second_octet_base + i // 62500}.{(i // 250) % 250}.{i % 250 + 2}"


def service(name, ip):
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "bench"},
        "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    }


class Monitor:
    """`nft monitor` in one namespace: every line with when it arrived."""

    def __init__(self, netns):
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "nft", "monitor"],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines = []
        self.changed = threading.Condition()
        threading.Thread(target=self.read, daemon=True).start()

    def read(self):
        for line in self.proc.stdout:
            with self.changed:
                self.lines.append((time.monotonic(), line))
                self.changed.notify_all()

    def wait(self, verb, ip, since, deadline):
        """When an `add element`/`delete element` line naming `ip` arrived after `since`."""
        needle = f" {ip} "
        with self.changed:
            while True:
                for at, line in reversed(self.lines):
                    if at < since:
                        break
                    if line.startswith(f"{verb} element") and needle in line:
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{verb} {ip}: not seen")
                self.changed.wait(left)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def quantiles(values):
    v = sorted(values)
    pick = lambda q: v[min(len(v) - 1, int(q * len(v)))]
    return f"p50 {pick(0.5) * 1e3:.1f} ms, p99 {pick(0.99) * 1e3:.1f} ms, max {v[-1] * 1e3:.1f} ms"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weft")
    p.add_argument("--services", type=int, default=10_000)
    p.add_argument("--changes", type=int, default=30)
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--lab", default="fr-proxy")
    a = p.parse_args()

    def weft(*args, stdin=""):
        done = subprocess.run([a.weft, "--lab", a.lab, *args], input=stdin, text=True, capture_output=True)
        if done.returncode != 0:
            raise SystemExit(f"weft {' '.join(args)}: {done.stderr.strip()}")

    weft("lab", "up", "--nodes", str(a.nodes))
    monitors = []
    try:
        items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}]
        items += [service(f"svc-{i}", cluster_ip(i, 97)) for i in range(a.services)]
        weft("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        namespaces = [f"weft-{a.lab}-node-{n}" for n in range(1, a.nodes + 1)]
        # Subscribed now, so they are listening well before the first timed change.
        monitors = [Monitor(ns) for ns in namespaces]
        # Every node has programmed the last Service (the proxy's map of Services without endpoints).
        last = cluster_ip(a.services - 1, 97)
        deadline = time.monotonic() + 120
        for ns in namespaces:
            element = f"{{ {last} . tcp . 80 }}"
            get = ["ip", "netns", "exec", ns, "nft", "get", "element", "inet", "weft", "no-endpoint-services", element]
            while subprocess.run(get, capture_output=True).returncode != 0:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{ns}: {last} not programmed within 120 s")
                time.sleep(0.1)
        created, deleted, commands = [], [], []
        for verb, out in (("add", created), ("delete", deleted)):
            for i in range(a.changes):
                ip = cluster_ip(i, 100)
                started = time.monotonic()
                if verb == "add":
                    weft("apply", "-f", "-", stdin=json.dumps(service(f"change-{i}", ip)))
                else:
                    weft("delete", "service", f"change-{i}", "-n", "bench")
                commands.append(time.monotonic() - started)
                seen = [m.wait(verb, ip, started, started + 10) for m in monitors]
                out.append(max(seen) - started)
        print(f"{a.services} Services beside the changes, {a.nodes} nodes; {a.changes} creates, then deletes")
        print(f"create → programmed on every node (from starting `weft apply`): {quantiles(created)}")
        print(f"delete → removed on every node (from starting `weft delete`): {quantiles(deleted)}")
        print(f"the `weft apply` / `weft delete` commands alone: {quantiles(commands)}")
    finally:
        for m in monitors:
            m.stop()
        weft("lab", "down")


if __name__ == "__main__":
    main()
