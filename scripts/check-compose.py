#!/usr/bin/env python3
"""Keeps docker-compose.yml in step with stack/stack.sh, since no Docker engine runs here to try it.

Checks: the stack's services exist; their host ports are the scripts' defaults, on 127.0.0.1;
the Kafka image is the Kafka version the scripts fetch; images are pinned; every depends_on names
a service; Redis runs without persistence as in the scripts. Prints 'N passed, N failed'.
"""
import pathlib
import re
import sys

try:
    import yaml
except ImportError:  # a machine without PyYAML: install it for this user
    import subprocess

    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "--user", "pyyaml"])
    import yaml

root = pathlib.Path(__file__).resolve().parent.parent
compose = yaml.safe_load((root / "docker-compose.yml").read_text())
stack_sh = (root / "stack" / "stack.sh").read_text()


def default(var):
    m = re.search(r"\$\{NEARBY_%s:-([^}]+)\}" % var, stack_sh)
    if not m:
        sys.exit(f"check-compose: stack/stack.sh has no default for NEARBY_{var}")
    return m.group(1)


checks = []


def check(name, ok, detail=""):
    checks.append((name, ok, detail))


services = compose.get("services", {})
for svc in ("kafka", "scylla", "redis"):
    check(f"service {svc} exists", svc in services)


def host_ports(svc):
    return [str(p) for p in services.get(svc, {}).get("ports", [])]


for svc, var in (("kafka", "KAFKA_PORT"), ("scylla", "CQL_PORT"), ("redis", "REDIS_PORT")):
    port = default(var)
    want = f"127.0.0.1:{port}:{port}"
    check(f"{svc} publishes {want}", want in host_ports(svc), str(host_ports(svc)))

kafka_version = default("KAFKA_VERSION")
kafka_image = services.get("kafka", {}).get("image", "")
check(
    f"kafka image is apache/kafka:{kafka_version}",
    kafka_image == f"apache/kafka:{kafka_version}",
    kafka_image,
)
kenv = services.get("kafka", {}).get("environment", {})
check("kafka is one combined KRaft node", kenv.get("KAFKA_PROCESS_ROLES") == "broker,controller")
check(
    "kafka advertises the host port to the host",
    f"127.0.0.1:{default('KAFKA_PORT')}" in kenv.get("KAFKA_ADVERTISED_LISTENERS", ""),
)
for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
    check(f"{key}=1 on one node", str(kenv.get(key)) == "1")

for name, svc in services.items():
    image = svc.get("image")
    if image:
        check(f"{name} image pinned", ":" in image and not image.endswith(":latest"), image)
    elif "build" not in svc:
        check(f"{name} has an image or a build", False)
    deps = svc.get("depends_on", {})
    for dep in deps:
        check(f"{name} depends on existing service {dep}", dep in services)
    if "kafka" in deps:
        env = svc.get("environment", {})
        check(
            f"{name} reaches kafka on the internal listener",
            env.get("NEARBY_KAFKA_BROKERS", "").startswith("kafka:"),
        )

for stage in ("setup", "fanout", "history-sink", "gateway"):
    check(f"stage {stage} exists", stage in services)
for stage in ("fanout", "gateway"):
    env = services.get(stage, {}).get("environment", {})
    check(f"{stage} reaches scylla and redis by service name",
          env.get("NEARBY_CQL_NODES", "").startswith("scylla:") and "redis:6379" in env.get("NEARBY_REDIS_URL", ""))
gw_ports = host_ports("gateway")
check("gateway publishes the client port 8080 on 127.0.0.1", "127.0.0.1:8080:8080" in gw_ports, str(gw_ports))

# A stage's SIGTERM is an orderly stop with a bound; Docker's default of 10 s before SIGKILL
# would cut a gateway's drain (30 s window + 5 s grace) short.
def seconds(text):
    m = re.fullmatch(r"(\d+)s", str(text or ""))
    return int(m.group(1)) if m else 0


for stage, bound in (("gateway", 36), ("fanout", 5), ("history-sink", 10)):
    grace = services.get(stage, {}).get("stop_grace_period")
    check(f"{stage} stop_grace_period covers its orderly stop ({bound} s)", seconds(grace) > bound, str(grace))

redis_cmd = " ".join(services.get("redis", {}).get("command", []))
check("redis runs without persistence, like the scripts", "--appendonly no" in redis_cmd and "--save" in redis_cmd)

failed = [c for c in checks if not c[1]]
for name, ok, detail in checks:
    if not ok:
        print(f"FAIL {name} {detail}")
print(f"check-compose: {len(checks) - len(failed)} passed, {len(failed)} failed")
sys.exit(1 if failed else 0)
