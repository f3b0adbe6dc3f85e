#!/usr/bin/env bash
# The send half of `make demo`: a throwaway demo database with a few subscribers,
# the local sink, and a real SMTP send of the sample issue into outbox/.
set -euo pipefail
cd "$(dirname "$0")/.."
NL=.venv/bin/newsletter
PY=.venv/bin/python
SAMPLE=${1:-issues/2026-11-24-survival-of-the-fittest-funnel.md}

# The demo folder's database and outbox are the demo's own (both git-ignored):
# every run starts them afresh.
rm -rf outbox subscribers.db subscribers.db-*
PORT=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export NEWSLETTER_SMTP_HOST=127.0.0.1 NEWSLETTER_SMTP_PORT=$PORT NEWSLETTER_SMTP_SECURITY=none
if [ ! -f secrets.toml ]; then
  # The signing secret for links, as 'newsletter init' makes one (git-ignored, 0600).
  (umask 077 && $PY -c 'import secrets; print("[web]\nsecret_key = \"%s\"" % secrets.token_urlsafe(32))' > secrets.toml)
fi

$NL db upgrade   # creates the fresh subscribers.db ('newsletter init' does this for a new folder)
$NL subscribers import demo/subscribers.csv
$NL sink --port "$PORT" --out outbox &
sink=$!
trap 'kill "$sink" 2>/dev/null || true' EXIT
$PY -c "
import socket, sys, time
for _ in range(100):
    try:
        socket.create_connection(('127.0.0.1', $PORT), timeout=0.2).close(); sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit('the sink did not start')"

$NL send "$SAMPLE" --yes
$NL status "$(basename "$SAMPLE" .md)"
kill -TERM "$sink"
wait "$sink" || true
trap - EXIT
echo
echo "Delivered through real SMTP: $(ls outbox/*.eml | wc -l) message(s) in outbox/ (open any .eml in a mail client)."
echo "Next: NEWSLETTER_NEWSLETTER_BASE_URL=http://127.0.0.1:8000 .venv/bin/newsletter serve"
echo "      # the signup form and the archive on http://127.0.0.1:8000/ (links point there too)"
