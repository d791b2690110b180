#!/usr/bin/env bash
# Headless-browser check of the retail chat page (GET /chat) with tests/web/retail-chat.mjs.
#
# This script does NOT start a server: the caller starts the real retail server (or, for
# development, `python3 tests/web/mock_server.py 8099 test-key`) and passes:
#   BASE_URL      server root, e.g. http://127.0.0.1:8099          (required)
#   API_KEY       a key the server accepts                           (required)
#   IMAGE_PATH    a PNG/JPEG/WebP photo to attach                    (required)
#   IMAGE_EXPECT  substring the photo reply must contain, e.g. a category name (required;
#                 case-insensitive, "a|b" accepts either)
#   TEXT_QUESTION default "How long do I have to return an item?"
#   TEXT_EXPECT   default "30 days" (case-insensitive, "a|b" accepts either)
#   SCREENSHOT    optional path for a full-page PNG screenshot
#   CHROMIUM      default /usr/bin/chromium
#   KILN_CACHE    default ~/.cache/kiln; playwright-core is installed under $KILN_CACHE/npm
#   REPLY_TIMEOUT_MS  default 120000 per reply
# Needs node >= 18 and npm. If /usr/bin/chromium is missing (and CHROMIUM is unset) it is
# installed with apt-get (run as root); playwright-core comes from the npm registry, no browser
# download (never `npx playwright install`).
set -euo pipefail
cd "$(dirname "$0")/.."

: "${BASE_URL:?set BASE_URL (e.g. http://127.0.0.1:8099); this script does not start the server}"
: "${API_KEY:?set API_KEY}"
: "${IMAGE_PATH:?set IMAGE_PATH to a PNG file}"
: "${IMAGE_EXPECT:?set IMAGE_EXPECT to a substring the photo reply must contain}"

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  if [ "$CHROMIUM" = /usr/bin/chromium ]; then
    echo "retail-web-check: installing chromium with apt-get" >&2
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium
  else
    echo "retail-web-check: CHROMIUM=$CHROMIUM is not executable" >&2
    exit 2
  fi
fi

command -v node >/dev/null || { echo "retail-web-check: node is required (>= 18)" >&2; exit 2; }
NPM_DIR="${KILN_CACHE:-$HOME/.cache/kiln}/npm"
PW_VERSION=1.64.1
if [ ! -f "$NPM_DIR/node_modules/playwright-core/package.json" ]; then
  echo "retail-web-check: installing playwright-core@$PW_VERSION into $NPM_DIR" >&2
  mkdir -p "$NPM_DIR"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$NPM_DIR" --no-audit --no-fund \
    --loglevel=error "playwright-core@$PW_VERSION"
fi

export BASE_URL API_KEY IMAGE_PATH IMAGE_EXPECT CHROMIUM
export PLAYWRIGHT_CORE="$NPM_DIR/node_modules/playwright-core"
exec node tests/web/retail-chat.mjs
