#!/bin/sh
# Collects the shard results of a goon fleet Job (goon-job.yaml) from its pods' logs.
#
#   conf/k8s/collect.sh [JOB] [DIR]      # defaults: netforge-goon, the current directory
#   conf/k8s/collect.sh --help           # this usage; any other option is refused (exit 1)
#
# Each pod prints its JSON between "----- BEGIN NETFORGE SHARD JSON I -----" and
# "----- END NETFORGE SHARD JSON I -----"; this writes DIR/shard-I.json for each pod and names
# it. Pods stay readable for the Job's ttlSecondsAfterFinished (an hour) after it ends.
# Environment: KUBECTL (default kubectl), NAMESPACE (default: kubectl's current namespace).
# Exits 1 when a pod's log holds no complete JSON (it failed, or the log was rotated away:
# the kubelet keeps 10 MiB per container by default), naming the pod; the other shards are
# still written.
set -eu
usage="usage: conf/k8s/collect.sh [JOB] [DIR]   (defaults: netforge-goon, the current directory; env KUBECTL, NAMESPACE)"
case "${1:-}" in
-h | --help)
    echo "$usage"
    echo "Writes DIR/shard-I.json for each pod of the goon fleet Job JOB, from the JSON in its log."
    exit 0
    ;;
-*)
    echo "collect.sh: unknown option $1; $usage" >&2
    exit 1
    ;;
esac
if [ $# -gt 2 ]; then
    echo "collect.sh: at most two arguments (JOB and DIR), got $#; $usage" >&2
    exit 1
fi
job=${1:-netforge-goon}
dir=${2:-.}
kubectl=${KUBECTL:-kubectl}
ns=${NAMESPACE:-}
k() {
    if [ -n "$ns" ]; then "$kubectl" -n "$ns" "$@"; else "$kubectl" "$@"; fi
}
mkdir -p "$dir"
pods=$(k get pods -l "job-name=$job" -o 'jsonpath={range .items[*]}{.metadata.name}{"\n"}{end}')
if [ -z "$pods" ]; then
    echo "collect.sh: no pods of job $job (is the name right? finished pods last ttlSecondsAfterFinished)" >&2
    exit 1
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
for pod in $pods; do
    if ! k logs "$pod" --tail=-1 >"$log"; then
        echo "collect.sh: pod $pod: cannot read its log" >&2
        status=1
        continue
    fi
    idx=$(sed -n 's/^----- BEGIN NETFORGE SHARD JSON \([0-9][0-9]*\) -----$/\1/p' "$log" | head -n 1)
    if [ -z "$idx" ]; then
        echo "collect.sh: pod $pod: no shard JSON in its log (see: kubectl logs $pod)" >&2
        status=1
        continue
    fi
    if ! grep -qx -- "----- END NETFORGE SHARD JSON $idx -----" "$log"; then
        echo "collect.sh: pod $pod: shard $idx's JSON is cut off (no end marker)" >&2
        status=1
        continue
    fi
    awk -v b="----- BEGIN NETFORGE SHARD JSON $idx -----" -v e="----- END NETFORGE SHARD JSON $idx -----" \
        '$0 == e { exit } p { print } $0 == b { p = 1 }' "$log" >"$dir/shard-$idx.json"
    echo "$pod: $dir/shard-$idx.json"
done
exit "$status"
