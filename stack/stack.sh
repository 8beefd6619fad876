#!/usr/bin/env bash
# Local Kafka (KRaft) + Cassandra + Redis for development and tests, without Docker.
#
#   stack/stack.sh up | down [--purge] | status | logs [kafka|cassandra|redis] [-n N] [-f] | env | fetch
#
# Jars come from Maven Central (poms in stack/maven/) into a cache outside the repo:
#   ${NEARBY_STACK_CACHE:-$HOME/.cache/nearby-friends/stack}/{kafka-VER,cassandra-VER}/lib
# Runtime state (configs rendered from stack/templates/, data, logs, pid files) lives in
#   ${NEARBY_STACK_DIR:-<repo>/.stack}
# See stack/README.md for the environment variables.
set -euo pipefail

SCRIPT_DIR=$(cd -P -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -P -- "$SCRIPT_DIR/.." && pwd -P)

abs_path() { # make a possibly relative path absolute (against the caller's cwd)
    case $1 in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s\n' "$PWD/$1" ;;
    esac
}

KAFKA_VERSION=${NEARBY_KAFKA_VERSION:-4.4.0}
LOG4J_VERSION=${NEARBY_LOG4J_VERSION:-2.25.5} # = the log4j-core that kafka_2.13 brings
CASSANDRA_VERSION=${NEARBY_CASSANDRA_VERSION:-5.0.9}

HOME_DIR=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
CACHE_DIR=$(abs_path "${NEARBY_STACK_CACHE:-${HOME_DIR:?cannot tell the home directory}/.cache/nearby-friends/stack}")
STATE_DIR=$(abs_path "${NEARBY_STACK_DIR:-$REPO_ROOT/.stack}")
KAFKA_HOME=$CACHE_DIR/kafka-$KAFKA_VERSION
CASSANDRA_HOME=$CACHE_DIR/cassandra-$CASSANDRA_VERSION

KAFKA_PORT=${NEARBY_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${NEARBY_KAFKA_CONTROLLER_PORT:-9093}
CQL_PORT=${NEARBY_CQL_PORT:-9042}
CASSANDRA_STORAGE_PORT=${NEARBY_CASSANDRA_STORAGE_PORT:-7000}
CASSANDRA_JMX_PORT=${NEARBY_CASSANDRA_JMX_PORT:-7199}
REDIS_PORT=${NEARBY_REDIS_PORT:-6379}

KAFKA_HEAP=${NEARBY_KAFKA_HEAP:-512m}
KAFKA_NUM_PARTITIONS=${NEARBY_KAFKA_NUM_PARTITIONS:-1}
KAFKA_INTERNAL_PARTITIONS=${NEARBY_KAFKA_INTERNAL_PARTITIONS:-4}
# Every test keyspace's tables stay in the schema, which lives on the heap: 1G ran out after
# about 400 keyspaces (three full test runs on one stack).
CASSANDRA_HEAP=${NEARBY_CASSANDRA_HEAP:-2G}
CASSANDRA_YOUNG_GEN=${NEARBY_CASSANDRA_YOUNG_GEN:-256M}

KAFKA_TIMEOUT=${NEARBY_KAFKA_TIMEOUT:-60}
CASSANDRA_TIMEOUT=${NEARBY_CASSANDRA_TIMEOUT:-180}
REDIS_TIMEOUT=${NEARBY_REDIS_TIMEOUT:-10}
STOP_TIMEOUT=${NEARBY_STACK_STOP_TIMEOUT:-30}

SERVICES=(kafka cassandra redis)
APT_PACKAGES=(redis-server pkg-config zlib1g-dev build-essential)

CONF_DIR=$STATE_DIR/conf
DATA_DIR=$STATE_DIR/data
LOG_DIR=$STATE_DIR/logs
RUN_DIR=$STATE_DIR/run

# ---------------------------------------------------------------------------------------------
# helpers

say() { printf 'stack: %s\n' "$*"; }
warn() { printf 'stack: %s\n' "$*" >&2; }
die() {
    printf 'stack: error: %s\n' "$*" >&2
    exit 1
}

usage() {
    cat <<'EOF'
usage: stack/stack.sh COMMAND
  up [SERVICE...]    fetch if needed, start Kafka, Cassandra and Redis (or only the services
                     named), wait until they answer
  down [--purge] [SERVICE...]
                     stop what `up` started (by pid), or only the services named (kafka,
                     cassandra, redis; `up` starts them again); --purge also deletes the data
  status             one line per service; exit 0 if all run, 3 otherwise
  logs [SERVICE] [-n N] [-f]
                     tail of a service's log (kafka, cassandra, redis; all when omitted)
  env                print `export` lines for tests (eval "$(stack/stack.sh env)")
  fetch              install missing Debian packages, download the jars, compile the probes
EOF
}

check_settings() {
    local name value seen=" "
    for name in KAFKA_PORT KAFKA_CONTROLLER_PORT CQL_PORT CASSANDRA_STORAGE_PORT \
        CASSANDRA_JMX_PORT REDIS_PORT; do
        value=${!name}
        if ! [[ $value =~ ^[0-9]+$ ]] || ((value < 1 || value > 65535)); then
            die "NEARBY_$name='$value' is not a port number"
        fi
        [[ $seen != *" $value "* ]] || die "port $value is configured twice (NEARBY_$name)"
        seen+="$value "
    done
    for name in KAFKA_TIMEOUT CASSANDRA_TIMEOUT REDIS_TIMEOUT STOP_TIMEOUT KAFKA_NUM_PARTITIONS \
        KAFKA_INTERNAL_PARTITIONS; do
        [[ ${!name} =~ ^[0-9]+$ ]] || die "$name='${!name}' is not a whole number"
    done
}

service_ports() { # all ports a service listens on
    case $1 in
        kafka) echo "$KAFKA_PORT $KAFKA_CONTROLLER_PORT" ;;
        cassandra) echo "$CQL_PORT $CASSANDRA_STORAGE_PORT $CASSANDRA_JMX_PORT" ;;
        redis) echo "$REDIS_PORT" ;;
        *) die "unknown service '$1'" ;;
    esac
}

service_port() { # the port clients use
    case $1 in
        kafka) echo "$KAFKA_PORT" ;;
        cassandra) echo "$CQL_PORT" ;;
        redis) echo "$REDIS_PORT" ;;
        *) die "unknown service '$1'" ;;
    esac
}

pid_file() { echo "$RUN_DIR/$1.pid"; }
log_file() { echo "$LOG_DIR/$1.log"; }

port_listening() { [[ -n $(ss -ltnH "sport = :$1" 2>/dev/null) ]]; }

is_alive() { # a process that exists and is not a zombie
    local stat
    [[ $1 =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

is_ours() { # started by this stack: its cwd or command line points into the state dir
    local cwd
    cwd=$(readlink "/proc/$1/cwd" 2>/dev/null) || cwd=
    [[ $cwd == "$STATE_DIR" || $cwd == "$STATE_DIR"/* ]] && return 0
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$STATE_DIR"
}

running_pid() { # prints the pid of the service if its pid file names a live process of ours
    local f pid
    f=$(pid_file "$1")
    [[ -f $f ]] || return 1
    pid=$(<"$f")
    is_alive "$pid" && is_ours "$pid" || return 1
    echo "$pid"
}

as_root() {
    if ((EUID == 0)); then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

render() { # render TEMPLATE OUTPUT KEY=VALUE...: replace @KEY@ with VALUE
    local template=$1 out=$2 content kv key value
    shift 2
    content=$(<"$template")
    for kv in "$@"; do
        key=${kv%%=*}
        value=${kv#*=}
        content=${content//"@$key@"/"$value"}
    done
    if [[ $content =~ @[A-Z_]+@ ]]; then
        die "$template: placeholder ${BASH_REMATCH[0]} has no value"
    fi
    printf '%s\n' "$content" >"$out.tmp"
    mv -f "$out.tmp" "$out"
}

# ---------------------------------------------------------------------------------------------
# fetch: Debian packages, Java, jars, probes

java_major() { # major version of a java binary, or nothing
    "$1" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1
}

JAVA=
JAVAC=
find_java() { # sets JAVA/JAVAC to a Java 17 JDK (Cassandra 5.0 runs on 11/17, Kafka 4 on 17+)
    [[ -n $JAVA ]] && return 0
    local candidate real
    local candidates=("${NEARBY_JAVA:-}" "${JAVA_HOME:+$JAVA_HOME/bin/java}")
    candidates+=("$(command -v java 2>/dev/null || true)")
    candidates+=(/usr/lib/jvm/java-17-openjdk-*/bin/java)
    for candidate in "${candidates[@]}"; do
        [[ -n $candidate && -x $candidate ]] || continue
        real=$(readlink -f "$candidate")
        if [[ $(java_major "$real") == 17 && -x ${real%/java}/javac ]]; then
            JAVA=$real
            JAVAC=${real%/java}/javac
            return 0
        fi
    done
    return 1
}

pkg_installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

ensure_packages() {
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        pkg_installed "$pkg" || missing+=("$pkg")
    done
    command -v ss >/dev/null 2>&1 || missing+=(iproute2)
    command -v ps >/dev/null 2>&1 || missing+=(procps)
    command -v mvn >/dev/null 2>&1 || missing+=(maven)
    find_java || missing+=(openjdk-17-jdk-headless)
    ((${#missing[@]} == 0)) && return 0

    command -v apt-get >/dev/null 2>&1 || die "missing packages (${missing[*]}) and no apt-get"
    say "installing Debian packages: ${missing[*]}"
    as_root apt-get update -q
    # Debian's redis-server starts a system-wide daemon on 6379 when installed; that would take
    # our port. A temporary policy-rc.d (exit 101 = "not allowed") stops that.
    local policy=/usr/sbin/policy-rc.d added_policy=0 rc=0
    if [[ " ${missing[*]} " == *" redis-server "* && ! -e $policy ]]; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy"
        added_policy=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" || rc=$?
    ((added_policy)) && as_root rm -f "$policy"
    ((rc == 0)) || die "apt-get install ${missing[*]} failed"
    JAVA=
    find_java || die "no Java 17 JDK found after installing openjdk-17-jdk-headless"
}

fetch_lib() { # fetch_lib NAME HOME POM MAVEN_ARGS...: copy runtime dependencies into HOME/lib
    local name=$1 home=$2 pom=$3 want log
    shift 3
    want=$({
        cat "$pom"
        printf '%s\n' "$@"
    } | sha256sum | cut -d' ' -f1)
    if [[ -d $home/lib && -f $home/.complete && $(<"$home/.complete") == "$want" ]]; then
        return 0
    fi
    say "fetching $name jars from Maven Central into $home/lib"
    mkdir -p "$home"
    rm -rf "$home/lib.tmp"
    log=$home/fetch.log
    if ! mvn -B -q -f "$pom" "$@" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$home/lib.tmp" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        die "fetching $name failed (full log: $log)"
    fi
    rm -rf "${home:?}/lib"
    mv "$home/lib.tmp" "$home/lib"
    printf '%s\n' "$want" >"$home/.complete"
}

PROBES_DIR=
compile_probes() { # compiled once per probe source + Kafka version, into the cache
    local hash
    hash=$({
        cat "$SCRIPT_DIR"/probes/*.java
        echo "$KAFKA_VERSION"
    } | sha256sum | cut -c1-16)
    PROBES_DIR=$CACHE_DIR/probes-$hash
    [[ -d $PROBES_DIR ]] && return 0
    rm -rf "$PROBES_DIR.tmp"
    mkdir -p "$PROBES_DIR.tmp"
    "$JAVAC" -nowarn -cp "$KAFKA_HOME/lib/*" -d "$PROBES_DIR.tmp" "$SCRIPT_DIR"/probes/*.java ||
        die "compiling the readiness probes failed"
    mv "$PROBES_DIR.tmp" "$PROBES_DIR"
}

cmd_fetch() {
    ensure_packages
    find_java || die "no Java 17 JDK (java + javac) found; set NEARBY_JAVA=/path/to/bin/java"
    command -v mvn >/dev/null 2>&1 || die "mvn not found"
    # One fetch at a time per cache (several clones may share it).
    mkdir -p "$CACHE_DIR"
    exec 9>"$CACHE_DIR/.fetch.lock"
    flock 9
    fetch_lib "Kafka $KAFKA_VERSION" "$KAFKA_HOME" "$SCRIPT_DIR/maven/kafka/pom.xml" \
        "-Dkafka.version=$KAFKA_VERSION" "-Dlog4j.version=$LOG4J_VERSION"
    fetch_lib "Cassandra $CASSANDRA_VERSION" "$CASSANDRA_HOME" \
        "$SCRIPT_DIR/maven/cassandra/pom.xml" "-Dcassandra.version=$CASSANDRA_VERSION"
    compile_probes
    exec 9>&-
}

# ---------------------------------------------------------------------------------------------
# starting

launch() { # launch SERVICE COMMAND...: detached daemon, output to its log, pid to its pid file
    local svc=$1 log pidf i
    shift
    log=$(log_file "$svc")
    pidf=$(pid_file "$svc")
    rm -f "$pidf"
    # The inner bash writes its own pid and execs the command, so the pid file names the daemon
    # itself whether or not setsid had to fork.
    (
        cd "$LOG_DIR"
        # shellcheck disable=SC2016 # $$ and "$@" are for the inner bash
        exec setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$pidf" "$@" </dev/null >>"$log" 2>&1
    ) &
    for ((i = 0; i < 50; i++)); do
        [[ -s $pidf ]] && return 0
        sleep 0.1
    done
    die "$svc: no pid file after launch (see $log)"
}

rotate_log() {
    local log
    log=$(log_file "$1")
    if [[ -s $log ]]; then mv -f "$log" "$log.1"; fi
    : >"$log"
}

check_ports_free() {
    local svc=$1 port
    for port in $(service_ports "$svc"); do
        if port_listening "$port"; then
            warn "$svc: port $port is already in use by another process:"
            ss -ltnp "sport = :$port" >&2 || true
            die "$svc cannot start. Stop that process, or pick other ports (NEARBY_*_PORT); \
if it is a leftover of this stack, run stack/stack.sh down"
        fi
    done
}

start_kafka() {
    local conf=$CONF_DIR/kafka-server.properties data=$DATA_DIR/kafka log cid_file cid
    log=$(log_file kafka)
    mkdir -p "$data"
    render "$SCRIPT_DIR/templates/server.properties" "$conf" \
        "KAFKA_PORT=$KAFKA_PORT" "KAFKA_CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT" \
        "KAFKA_DATA_DIR=$data" "KAFKA_NUM_PARTITIONS=$KAFKA_NUM_PARTITIONS" \
        "KAFKA_INTERNAL_PARTITIONS=$KAFKA_INTERNAL_PARTITIONS"
    render "$SCRIPT_DIR/templates/log4j2.xml" "$CONF_DIR/kafka-log4j2.xml"
    rotate_log kafka
    local tool_opts=(-Xmx256m -XX:+UseSerialGC "-Dlog4j2.configurationFile=$CONF_DIR/kafka-log4j2.xml"
        -cp "$KAFKA_HOME/lib/*")
    if [[ ! -f $data/meta.properties ]]; then
        cid_file=$CONF_DIR/kafka-cluster.id
        if [[ ! -s $cid_file ]]; then
            cid=$("$JAVA" "${tool_opts[@]}" kafka.tools.StorageTool random-uuid 2>>"$log" | tail -n 1) || true
            [[ $cid =~ ^[A-Za-z0-9_-]{22}$ ]] || die "kafka: StorageTool random-uuid failed (see $log)"
            echo "$cid" >"$cid_file"
        fi
        cid=$(<"$cid_file")
        say "kafka: formatting KRaft storage (cluster id $cid)"
        "$JAVA" "${tool_opts[@]}" kafka.tools.StorageTool format -t "$cid" -c "$conf" >>"$log" 2>&1 ||
            fail_service kafka "formatting the KRaft storage failed"
    fi
    launch kafka "$JAVA" -server "-Xms$KAFKA_HEAP" "-Xmx$KAFKA_HEAP" \
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -XX:+ExitOnOutOfMemoryError \
        "-XX:ErrorFile=$LOG_DIR/kafka-hs_err_pid%p.log" -Djava.awt.headless=true \
        -Djava.net.preferIPv4Stack=true \
        "-Dlog4j2.configurationFile=$CONF_DIR/kafka-log4j2.xml" "-Dkafka.logs.dir=$LOG_DIR" \
        -cp "$KAFKA_HOME/lib/*" kafka.Kafka "$conf"
}

start_cassandra() {
    local conf=$CONF_DIR/cassandra.yaml data=$DATA_DIR/cassandra jamm
    mkdir -p "$data" "$CONF_DIR/cassandra-triggers"
    render "$SCRIPT_DIR/templates/cassandra.yaml" "$conf" \
        "CQL_PORT=$CQL_PORT" "CASSANDRA_STORAGE_PORT=$CASSANDRA_STORAGE_PORT" \
        "CASSANDRA_DATA_DIR=$data"
    render "$SCRIPT_DIR/templates/logback.xml" "$CONF_DIR/cassandra-logback.xml"
    rotate_log cassandra
    local opts=(-server "-Xms$CASSANDRA_HEAP" "-Xmx$CASSANDRA_HEAP" "-Xmn$CASSANDRA_YOUNG_GEN"
        # GC: G1 as in upstream conf/jvm17-server.options, with a fixed young generation.
        -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1
        -XX:G1RSetUpdatingPauseTimePercent=5 -XX:MaxGCPauseMillis=300
        -XX:InitiatingHeapOccupancyPercent=70
        -Xss256k -XX:+UseThreadPriorities -XX:+PerfDisableSharedMem -XX:+ExitOnOutOfMemoryError
        -XX:+HeapDumpOnOutOfMemoryError "-XX:HeapDumpPath=$LOG_DIR"
        "-XX:ErrorFile=$LOG_DIR/cassandra-hs_err_pid%p.log"
        -Djava.net.preferIPv4Stack=true
        # JMX only on the loopback interface (Cassandra's "local JMX").
        # The RMI connector shares the JMX port (otherwise it takes a random one).
        "-Dcassandra.jmx.local.port=$CASSANDRA_JMX_PORT" -Djava.rmi.server.hostname=127.0.0.1
        "-Dcom.sun.management.jmxremote.rmi.port=$CASSANDRA_JMX_PORT"
        -Dcom.sun.management.jmxremote.authenticate=false
        # Java 17 module access, as upstream conf/jvm17-server.options.
        -Djdk.attach.allowAttachSelf=true
        --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
        --add-exports java.base/jdk.internal.ref=ALL-UNNAMED
        --add-exports java.base/sun.nio.ch=ALL-UNNAMED
        --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
        --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
        --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
        --add-exports java.sql/java.sql=ALL-UNNAMED
        --add-exports java.base/java.lang.ref=ALL-UNNAMED
        --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
        --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
        --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
        --add-opens java.base/java.lang.module=ALL-UNNAMED
        --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
        --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
        --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
        --add-opens java.base/jdk.internal.math=ALL-UNNAMED
        --add-opens java.base/jdk.internal.module=ALL-UNNAMED
        --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
        --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
        --add-opens java.base/sun.nio.ch=ALL-UNNAMED
        --add-opens java.base/java.io=ALL-UNNAMED
        --add-opens java.base/java.nio=ALL-UNNAMED
        --add-opens java.base/java.lang.reflect=ALL-UNNAMED
        --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
        --add-opens java.base/java.lang=ALL-UNNAMED
        --add-opens java.base/java.util=ALL-UNNAMED
        --add-opens java.base/java.util.concurrent=ALL-UNNAMED
        --add-opens java.base/java.util.concurrent.atomic=ALL-UNNAMED
        -Dio.netty.tryReflectionSetAccessible=true
        -Dio.netty.allocator.useCacheForAllThreads=true -Dio.netty.allocator.maxOrder=11
        # Cassandra itself.
        -Dcassandra-foreground=yes
        "-Dcassandra.config=file://$conf"
        "-Dcassandra.storagedir=$data"
        "-Dcassandra.logdir=$LOG_DIR"
        "-Dcassandra.triggers_dir=$CONF_DIR/cassandra-triggers"
        "-Dlogback.configurationFile=$CONF_DIR/cassandra-logback.xml"
        -Dcassandra.skip_wait_for_gossip_to_settle=0)
    for jamm in "$CASSANDRA_HOME"/lib/jamm-*.jar; do
        [[ -f $jamm ]] && opts+=("-javaagent:$jamm")
    done
    MALLOC_ARENA_MAX=4 launch cassandra "$JAVA" "${opts[@]}" -cp "$CASSANDRA_HOME/lib/*" \
        org.apache.cassandra.service.CassandraDaemon
}

start_redis() {
    local data=$DATA_DIR/redis
    mkdir -p "$data"
    render "$SCRIPT_DIR/templates/redis.conf" "$CONF_DIR/redis.conf" \
        "REDIS_PORT=$REDIS_PORT" "REDIS_DATA_DIR=$data"
    rotate_log redis
    launch redis "$(command -v redis-server)" "$CONF_DIR/redis.conf"
}

# ---------------------------------------------------------------------------------------------
# readiness

PROBE_JVM=(-Xmx64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto)
PROBE_OUT=

wait_ready() { # wait_ready SERVICE PID TIMEOUT: 0 when it answers; sets PROBE_OUT
    local svc=$1 pid=$2 timeout=$3 out rc=0 deadline answer
    out=$(mktemp)
    case $svc in
        kafka)
            "$JAVA" "${PROBE_JVM[@]}" -cp "$PROBES_DIR:$KAFKA_HOME/lib/*" KafkaProbe \
                "127.0.0.1:$KAFKA_PORT" "$timeout" "$pid" >"$out" 2>&1 || rc=$?
            ;;
        cassandra)
            "$JAVA" "${PROBE_JVM[@]}" -cp "$PROBES_DIR" CqlProbe \
                127.0.0.1 "$CQL_PORT" "$timeout" "$pid" >"$out" 2>&1 || rc=$?
            ;;
        redis)
            deadline=$((SECONDS + timeout))
            rc=1
            while :; do
                answer=$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>&1) || true
                if [[ $answer == PONG ]]; then
                    echo "PONG" >"$out"
                    rc=0
                    break
                fi
                if ! is_alive "$pid"; then
                    echo "process $pid exited; last answer: $answer" >"$out"
                    rc=3
                    break
                fi
                if ((SECONDS >= deadline)); then
                    echo "timed out; last answer: $answer" >"$out"
                    break
                fi
                sleep 0.2
            done
            ;;
    esac
    PROBE_OUT=$(grep -v '^[[:space:]]*$' "$out" | tail -n 3 | tr '\n' ' ') || true
    PROBE_OUT=${PROBE_OUT% }
    rm -f "$out"
    return "$rc"
}

fail_service() { # print what went wrong, the log tail and a hint, then exit non-zero
    local svc=$1 reason=$2 log hint ports
    log=$(log_file "$svc")
    ports=$(service_ports "$svc")
    {
        echo
        echo "stack: $svc FAILED: $reason"
        echo "stack: log: $log (last 20 lines below)"
        echo "------------------------------------------------------------------------"
        tail -n 20 "$log" 2>/dev/null || echo "(no log)"
        echo "------------------------------------------------------------------------"
        if grep -qE 'Address already in use|BindException|bind\(\) failed|Could not create server TCP' \
            "$log" 2>/dev/null; then
            hint="a port ($ports) is in use: look with 'ss -ltnp', run 'stack/stack.sh down', or choose other NEARBY_*_PORT values"
        elif grep -qE 'UnsupportedClassVersionError|Unrecognized VM option|InaccessibleObjectException|IllegalAccessError|module .* does not (export|open)|Could not create the Java Virtual Machine' \
            "$log" 2>/dev/null; then
            hint="the JVM refused to start: wrong Java (needs a Java 17 JDK, using $JAVA; set NEARBY_JAVA=/path/to/bin/java) or a bad NEARBY_*_HEAP value?"
        elif grep -qiE 'cluster id|cluster.id|Saved cluster name|InconsistentClusterIdException|snitch' \
            "$log" 2>/dev/null; then
            hint="the data dir does not match this configuration: 'stack/stack.sh down --purge' resets it"
        else
            hint="try 'stack/stack.sh down' then 'stack/stack.sh up'; 'stack/stack.sh down --purge' also resets the data; a slow machine may need a larger NEARBY_${svc^^}_TIMEOUT"
        fi
        echo "stack: hint: $hint"
        echo "stack: other services are left as they are; 'stack/stack.sh down' stops them"
    } >&2
    exit 1
}

# ---------------------------------------------------------------------------------------------
# commands

cmd_up() {
    local started_at=$SECONDS svc pid timeout rc arg chosen=" "
    for arg in "$@"; do
        case $arg in
            kafka | cassandra | redis) chosen+="$arg " ;;
            *) die "up: unknown service '$arg' (services: ${SERVICES[*]})" ;;
        esac
    done
    [[ $chosen != " " ]] || chosen=" ${SERVICES[*]} "
    check_settings
    cmd_fetch
    mkdir -p "$CONF_DIR" "$DATA_DIR" "$LOG_DIR" "$RUN_DIR"

    declare -A pids=() fresh=()
    # Cassandra is the slow one: start it first so the others start while it boots.
    local order=(cassandra kafka redis) to_start=()
    for svc in "${order[@]}"; do
        [[ $chosen == *" $svc "* ]] || continue
        if pid=$(running_pid "$svc"); then
            pids[$svc]=$pid
        else
            rm -f "$(pid_file "$svc")"
            to_start+=("$svc")
        fi
    done
    # Check every port before starting anything, so a conflict leaves nothing half started.
    for svc in "${to_start[@]}"; do
        check_ports_free "$svc"
    done
    for svc in "${to_start[@]}"; do
        "start_$svc"
        pids[$svc]=$(<"$(pid_file "$svc")")
        fresh[$svc]=1
        say "$svc: started (pid ${pids[$svc]}, log $(log_file "$svc"))"
    done

    for svc in redis kafka cassandra; do
        [[ $chosen == *" $svc "* ]] || continue
        case $svc in
            kafka) timeout=$KAFKA_TIMEOUT ;;
            cassandra) timeout=$CASSANDRA_TIMEOUT ;;
            redis) timeout=$REDIS_TIMEOUT ;;
        esac
        rc=0
        wait_ready "$svc" "${pids[$svc]}" "$timeout" || rc=$?
        if ((rc == 0)) && [[ -n ${fresh[$svc]:-} ]]; then
            say "$svc: ready on 127.0.0.1:$(service_port "$svc") after $((SECONDS - started_at))s ($PROBE_OUT)"
        elif ((rc == 0)); then
            say "$svc: already running (pid ${pids[$svc]}) and answering ($PROBE_OUT)"
        elif ((rc == 3)); then
            rm -f "$(pid_file "$svc")"
            fail_service "$svc" "the process exited during start-up ($PROBE_OUT)"
        else
            fail_service "$svc" "no answer within ${timeout}s ($PROBE_OUT)"
        fi
    done
    say "up in $((SECONDS - started_at))s; state in $STATE_DIR"
}

cmd_down() {
    local purge=0 arg svc pidf pid port busy=() i chosen=()
    for arg in "$@"; do
        case $arg in
            --purge) purge=1 ;;
            kafka | cassandra | redis) chosen+=("$arg") ;;
            *) die "down: unknown option or service '$arg'" ;;
        esac
    done
    if ((${#chosen[@]} == 0)); then
        chosen=("${SERVICES[@]}")
    elif ((purge)); then
        die "down: --purge deletes every service's data; it cannot be combined with a service"
    fi
    declare -A stopping=()
    for svc in "${chosen[@]}"; do
        pidf=$(pid_file "$svc")
        [[ -f $pidf ]] || continue
        pid=$(<"$pidf")
        if is_alive "$pid" && is_ours "$pid"; then
            say "$svc: stopping (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            stopping[$svc]=$pid
        else
            say "$svc: not running (stale pid file removed)"
            rm -f "$pidf"
        fi
    done
    for ((i = 0; i < STOP_TIMEOUT * 5; i++)); do
        for svc in "${!stopping[@]}"; do
            if ! is_alive "${stopping[$svc]}"; then
                say "$svc: stopped"
                rm -f "$(pid_file "$svc")"
                unset "stopping[$svc]"
            fi
        done
        ((${#stopping[@]} == 0)) && break
        sleep 0.2
    done
    for svc in "${!stopping[@]}"; do
        warn "$svc: still alive after ${STOP_TIMEOUT}s, sending SIGKILL to pid ${stopping[$svc]}"
        kill -KILL "${stopping[$svc]}" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            is_alive "${stopping[$svc]}" || break
            sleep 0.1
        done
        rm -f "$(pid_file "$svc")"
    done

    if ((purge)); then
        say "purging data in $DATA_DIR"
        rm -rf -- "${DATA_DIR:?}"
    fi

    # Sockets can take a moment to close after the process is gone.
    for ((i = 0; i < 20; i++)); do
        busy=()
        for svc in "${chosen[@]}"; do
            for port in $(service_ports "$svc"); do
                port_listening "$port" && busy+=("$port")
            done
        done
        ((${#busy[@]} == 0)) && break
        sleep 0.25
    done
    if ((${#busy[@]} > 0)); then
        warn "ERROR: still listening after down on port(s) ${busy[*]}:"
        for port in "${busy[@]}"; do
            ss -ltnp "sport = :$port" >&2 || true
        done
        die "something else holds the stack's ports (not started by this stack, or started from another NEARBY_STACK_DIR)"
    fi
    say "down; nothing listening on the stack's ports"
}

cmd_status() {
    local svc pid port all=0
    for svc in "${SERVICES[@]}"; do
        port=$(service_port "$svc")
        if pid=$(running_pid "$svc"); then
            if port_listening "$port"; then
                printf '%-10s running (pid %s, port %s)\n' "$svc" "$pid" "$port"
            else
                printf '%-10s starting (pid %s, port %s not listening yet)\n' "$svc" "$pid" "$port"
                all=3
            fi
        else
            printf '%-10s stopped\n' "$svc"
            all=3
        fi
    done
    return "$all"
}

cmd_logs() {
    local svcs=() lines=50 follow=0 svc log
    while (($#)); do
        case $1 in
            kafka | cassandra | redis) svcs+=("$1") ;;
            -n)
                [[ ${2:-} =~ ^[0-9]+$ ]] || die "logs: -n needs a number"
                lines=$2
                shift
                ;;
            -f) follow=1 ;;
            *) die "logs: unknown argument '$1' (services: ${SERVICES[*]})" ;;
        esac
        shift
    done
    ((${#svcs[@]})) || svcs=("${SERVICES[@]}")
    if ((follow)); then
        local files=()
        for svc in "${svcs[@]}"; do files+=("$(log_file "$svc")"); done
        exec tail -n "$lines" -F "${files[@]}"
    fi
    for svc in "${svcs[@]}"; do
        log=$(log_file "$svc")
        ((${#svcs[@]} > 1)) && echo "==> $svc: $log <=="
        if [[ -f $log ]]; then tail -n "$lines" "$log"; else echo "(no log yet: $log)"; fi
    done
}

cmd_env() {
    printf 'export NEARBY_KAFKA_BROKERS=%q\n' "127.0.0.1:$KAFKA_PORT"
    printf 'export NEARBY_CQL_NODES=%q\n' "127.0.0.1:$CQL_PORT"
    printf 'export NEARBY_REDIS_URL=%q\n' "redis://127.0.0.1:$REDIS_PORT/"
    printf 'export NEARBY_KAFKA_LIBS=%q\n' "$KAFKA_HOME/lib"
}

main() {
    local cmd=${1:-}
    (($#)) && shift
    case $cmd in
        up) cmd_up "$@" ;;
        down) cmd_down "$@" ;;
        status) cmd_status "$@" ;;
        logs) cmd_logs "$@" ;;
        env) cmd_env "$@" ;;
        fetch)
            check_settings
            cmd_fetch
            say "fetch done: $KAFKA_HOME/lib, $CASSANDRA_HOME/lib"
            ;;
        -h | --help | help) usage ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
