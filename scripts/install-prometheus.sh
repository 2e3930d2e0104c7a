#!/usr/bin/env bash
# Install Debian's Prometheus for the Grafana dashboard's test (tests/dashboard/test_grafana.py),
# which starts its own server on 127.0.0.1 with a throwaway TSDB and runs every panel's query.
# Exit status 2: this machine cannot install it (not root, or no apt-get); the test then skips
# and says why.
set -euo pipefail
if command -v prometheus >/dev/null; then exit 0; fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "install-prometheus: not root or no apt-get; the Grafana dashboard test will skip" >&2
    exit 2
fi
echo "install-prometheus: installing prometheus (apt-get)"
export DEBIAN_FRONTEND=noninteractive
# The package's maintainer scripts would start a daemon listening on every interface; the
# test starts its own, so keep services from starting (policy-rc.d is what invoke-rc.d reads).
policy=/usr/sbin/policy-rc.d
added_policy=false
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    added_policy=true
fi
cleanup() { if $added_policy; then rm -f "$policy"; fi; }
trap cleanup EXIT
if ! apt-get install -y -qq --no-install-recommends prometheus >/dev/null; then
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
# Belt and braces: stop a daemon the package started anyway (init scripts ignoring the policy).
if command -v service >/dev/null; then service prometheus stop >/dev/null 2>&1 || true; fi
# Only the package's daemon runs as the user "prometheus"; servers of tests are left alone.
for pid in $(pgrep -x -u prometheus prometheus || true); do
    echo "install-prometheus: stopping the packaged daemon (pid $pid); tests start their own"
    kill "$pid"
done
