#!/bin/sh
# The demo: install, build, start `anic serve` in its own network namespace
# with a mild fault profile, download and upload with curl (SHA-256 checked),
# show the counters, tear everything down. Run as root.
set -eu
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh build

NS=anic-demo-$$
TMP=$(mktemp -d /tmp/anic-demo.XXXXXX)
CA=$TMP/ca.pem
SIZE=${ANIC_DEMO_SIZE:-100000000}
# The run's one seed: fault-tx uses SEED, fault-rx SEED+1 (anic serve --seed).
SEED=${ANIC_DEMO_SEED:-1}
SERVER_PID=""

cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    # anic deletes its namespace on exit; this only covers a crash.
    [ -e "/run/netns/$NS" ] && ip netns del "$NS" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

echo "== starting anic serve in namespace $NS (faults: tx 'loss 0.5% reorder 1% gap 3', rx 'loss 0.5%')"
echo "   seed $SEED (replay this run: ANIC_DEMO_SEED=$SEED scripts/demo.sh)"
./build/anic serve --netns "$NS" --ca-out "$CA" --ready-file "$TMP/ready" --duration 300 \
    --seed "$SEED" --fault-tx 'loss 0.5% reorder 1% gap 3' --fault-rx 'loss 0.5%' \
    --pcap "$TMP/wire.pcap" --keylog "$TMP/keys.log" >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
i=0
while [ ! -e "$TMP/ready" ]; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 "$SERVER_PID" 2>/dev/null; then
        cat "$TMP/server.log"; echo "demo: server did not start" >&2; exit 1
    fi
    sleep 0.1
done
cat "$TMP/server.log"

in_ns() { ip netns exec "$NS" "$@"; }
fail=0

echo
echo "== download: GET https://10.77.0.2/bytes/$SIZE"
got=$(in_ns curl -sS --cacert "$CA" --max-time 120 "https://10.77.0.2/bytes/$SIZE" | sha256sum | cut -d' ' -f1)
want=$(./build/anic pattern "$SIZE" | sha256sum | cut -d' ' -f1)
echo "   sha256 received $got"
echo "   sha256 expected $want"
if [ "$got" = "$want" ]; then echo "   download OK"; else echo "   download MISMATCH"; fail=1; fi

echo
echo "== upload: PUT https://10.77.0.2/upload (64 MiB of random bytes)"
head -c 67108864 /dev/urandom >"$TMP/upload.bin"
got=$(in_ns curl -sS --cacert "$CA" --max-time 120 -T "$TMP/upload.bin" https://10.77.0.2/upload)
want=$(sha256sum "$TMP/upload.bin" | cut -d' ' -f1)
echo "   sha256 from server $got"
echo "   sha256 of the file $want"
if [ "$got" = "$want" ]; then echo "   upload OK"; else echo "   upload MISMATCH"; fail=1; fi

echo
echo "== the wire, decrypted by tshark with the key log (first requests)"
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" || true
SERVER_PID=""
tshark -r "$TMP/wire.pcap" -o "tls.keylog_file:$TMP/keys.log" -o tcp.reassemble_out_of_order:TRUE -Y http.request \
    -T fields -e ip.src -e http.request.method -e http.request.uri 2>/dev/null | head -5 || true

echo
echo "== counters (printed by anic on exit)"
sed -n '/shutting down/,$p' "$TMP/server.log"
[ $fail -eq 0 ] && echo "demo: download and upload verified" || echo "demo: FAILED" >&2
exit $fail
