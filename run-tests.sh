#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, then runs it:
# the Debian packages of the tools the end-to-end tests drive (tshark, tcpdump,
# iproute2, nftables, iperf3 for kdp bench attach; libpcap0.8 for --filter), kdp itself with its test extras, network-config-analyzer in a
# virtualenv of its own (.venv-nca), then pytest.
# `.ci/run` calls exactly this. Extra arguments go to pytest (e.g. -x, -k NAME).
# A tool that is still missing makes its tests fail, never skip.
set -euo pipefail
cd "$(dirname "$0")"

packages=(tshark tcpdump libpcap0.8 iproute2 nftables ethtool iperf3)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]]; then sudo=(); elif command -v sudo >/dev/null; then sudo=(sudo); else
        echo "run-tests.sh: needs root (or sudo) to install: ${missing[*]}" >&2
        exit 2
    fi
    echo "run-tests.sh: installing ${missing[*]}" >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi

python3 -m pip install -q -e '.[test]'
# network-config-analyzer (`nca`, the independent reference of tests/test_policy_nca.py) pins
# PyYAML 6.0.2 and other exact versions: it lives in a virtualenv of its own, not beside kdp
if [[ ! -x .venv-nca/bin/nca ]]; then
    echo "run-tests.sh: installing network-config-analyzer into .venv-nca" >&2
    python3 -m venv .venv-nca
    .venv-nca/bin/python -m pip install -q network-config-analyzer==2.1.0
fi
exec python3 -m pytest -q tests "$@"
