#!/bin/sh
# A cluster on one machine (docs/scale.md, "Communication, measured on a cluster of
# namespaces"): N network namespaces, each a node with one veth link to a bridge in a switch
# namespace, every link limited by tc's tbf in both directions; runs `mpirun -np N COMMAND...`
# over TCP between the nodes and writes each node's veth counters before and after. Needs root
# (ip netns, tc).
#
#   bench/cluster.sh -n N [-r RATE] [-o DIR] -- COMMAND [ARGS...]
#
# -r: tbf rate of every link, each way (tc's units; default 1gbit). -o: where the counters go
# (DIR/counters: "rank tx_bytes tx_packets rx_bytes rx_packets", one line before the run and one
# after for each rank, the first field "before"/"after"). Exit status: mpirun's, 2 on bad usage,
# 3 when the namespaces cannot be made or not all were removed.
#
# Every address is inside namespaces made here (10.77.0.0/24 on the bridge; node k is
# 10.77.0.(k+1)), mpirun itself runs in node 0, and nothing is added to the host's namespace.
# The names carry this process's id, so runs side by side do not clash; a trap removes every
# namespace made (their processes first) on exit, error or signal, and checks none is left.
set -u

usage() { echo "usage: bench/cluster.sh -n N [-r RATE] [-o DIR] -- COMMAND [ARGS...]" >&2; exit 2; }
n=0 rate=1gbit out=.
while [ $# -gt 0 ]; do
    case $1 in
        -n) [ $# -ge 2 ] || usage; n=$2; shift 2 ;;
        -r) [ $# -ge 2 ] || usage; rate=$2; shift 2 ;;
        -o) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
        --) shift; break ;;
        *) usage ;;
    esac
done
case $n in ''|*[!0-9]*) usage ;; esac
[ "$n" -ge 1 ] && [ "$n" -le 200 ] && [ $# -ge 1 ] || usage
if [ "$(id -u)" -ne 0 ]; then echo "cluster.sh: needs root (ip netns, tc)" >&2; exit 3; fi
mkdir -p "$out" || exit 2

# tbf: the bucket holds 64 KB (a 1 Gbit/s link sends it in 0.5 ms; a frame of 1514 bytes fits
# many times over) and a packet waits at most 50 ms in the queue (6 MB at 1 Gbit/s, more than a
# step's window of TCP data, so the shaper delays and does not drop).
burst=64kb latency=50ms
pre=dmlc$$
sw=${pre}sw
made="" tmp=""

cleanup() {
    rc=$?
    trap - EXIT INT TERM HUP
    for ns in $made; do
        # the processes in a namespace made here were started by this script's mpirun
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    [ -n "$tmp" ] && rm -rf "$tmp"
    left=$(ip netns list | grep -c "^$pre")
    if [ "$left" -ne 0 ]; then
        echo "cluster.sh: $left namespaces named $pre* are left" >&2
        rc=3
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
tmp=$(mktemp -d) || exit 3

fail() { echo "cluster.sh: $*" >&2; exit 3; }

# Each name joins $made before its namespace is added: a signal may arrive in between.
made=$sw
ip netns add "$sw" || fail "cannot add namespace $sw"
ip -n "$sw" link add br0 type bridge || fail "cannot add a bridge in $sw"
ip -n "$sw" link set br0 up || fail "cannot bring up br0"
k=0
while [ "$k" -lt "$n" ]; do
    ns=${pre}n$k
    made="$made $ns"
    ip netns add "$ns" || fail "cannot add namespace $ns"
    ip -n "$ns" link set lo up
    # one veth made inside the node, its peer moved into the switch: the host's namespace never
    # holds either end. TCP keeps its window over a step's compute (a cluster's usual setting)
    # rather than starting each allreduce slowly again.
    ip -n "$ns" link add eth0 type veth peer name p$k netns "$sw" || fail "cannot add veth to $ns"
    ip netns exec "$ns" sysctl -qw net.ipv4.tcp_slow_start_after_idle=0 || fail "sysctl in $ns"
    ip -n "$sw" link set p$k master br0 up || fail "cannot attach p$k to br0"
    ip -n "$ns" addr add 10.77.0.$((k + 1))/24 dev eth0 || fail "cannot address $ns"
    ip -n "$ns" link set eth0 up || fail "cannot bring up eth0 in $ns"
    # the node's sending side, and the switch's port towards it (the node's receiving side)
    tc -n "$ns" qdisc add dev eth0 root tbf rate "$rate" burst $burst latency $latency ||
        fail "tc tbf on eth0 in $ns (rate $rate)"
    tc -n "$sw" qdisc add dev p$k root tbf rate "$rate" burst $burst latency $latency ||
        fail "tc tbf on p$k in $sw (rate $rate)"
    echo "10.77.0.$((k + 1)) slots=1" >> "$tmp/hosts"
    k=$((k + 1))
done

# Each node has its own host name (a UTS namespace) and temporary folder: OpenMPI names its
# session folders after the host, and daemons of one name would share and remove each other's.
{
    echo '#!/bin/sh'
    echo 'k=$1; shift'
    echo "hostname $pre\"n\$k\" && export TMPDIR=$tmp/n\"\$k\" && mkdir -p \"\$TMPDIR\" &&"
    echo 'exec "$@"'
} > "$tmp/node"
# OpenMPI's rsh launcher calls AGENT HOST COMMAND...: run the command in that host's node.
{
    echo '#!/bin/sh'
    echo 'k=$((${1##*.} - 1)); shift'
    echo "exec ip netns exec $pre\"n\$k\" unshare --uts $tmp/node \"\$k\" /bin/sh -c \"\$*\""
} > "$tmp/agent"
chmod +x "$tmp/node" "$tmp/agent"

counters() {
    k=0
    while [ "$k" -lt "$n" ]; do
        s=/sys/class/net/eth0/statistics
        ip netns exec ${pre}n$k sh -c \
            "echo $1 $k \$(cat $s/tx_bytes $s/tx_packets $s/rx_bytes $s/rx_packets)"
        k=$((k + 1))
    done
}

counters before > "$out/counters" || fail "cannot read the counters"
# --bind-to none: the "nodes" share this machine's cores, and each would bind its rank to core 0.
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
ip netns exec ${pre}n0 unshare --uts "$tmp/node" 0 \
    mpirun --allow-run-as-root -np "$n" --hostfile "$tmp/hosts" --bind-to none --wdir "$(pwd)" \
    --mca plm_rsh_agent "$tmp/agent" --mca pml ob1 --mca btl tcp,self \
    --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 \
    --mca mpi_yield_when_idle 1 "$@" &
mpirun_pid=$!
wait "$mpirun_pid"
rc=$?
counters after >> "$out/counters" || fail "cannot read the counters"
exit "$rc"
