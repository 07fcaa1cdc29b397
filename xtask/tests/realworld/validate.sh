#!/usr/bin/env bash
# Runs the real oracles over every case listed in SOURCES.tsv (role = case):
#   compose: docker compose -f FILE --project-directory DIR config -q
#   nginx:   nginx -t in a throwaway container (NGINX_IMAGE, --network none)
#   openssl: openssl req -config FILE -new [...] (and the same with -x509)
# Prints one line per case and "N passed, N failed"; exit 0 only if none failed.
# Usage: validate.sh [-v] [substring-filter]
set -u
ROOT=$(cd "$(dirname "$0")" && pwd)
VERBOSE=0
if [ "${1:-}" = "-v" ]; then VERBOSE=1; shift; fi
FILTER=${1:-}
pass=0; fail=0
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

say() { # status file detail
  if [ "$1" = ok ]; then pass=$((pass+1)); echo "ok    $2"; else fail=$((fail+1)); echo "FAIL  $2"; fi
  if [ "$1" != ok ] || [ "$VERBOSE" = 1 ]; then [ -s "$3" ] && sed 's/^/      | /' "$3" | head -20; fi
}

# The local stand-in image that has nginx (see docs/images.md): $NGINX_IMAGE, else the
# repository's .env, else the newest monorepo-local/nginx image.
nginx_image() {
  if [ -n "${NGINX_IMAGE:-}" ]; then echo "$NGINX_IMAGE"; return; fi
  local envf="$ROOT/../../../.env"
  if [ -f "$envf" ] && grep -q '^NGINX_IMAGE=' "$envf"; then grep '^NGINX_IMAGE=' "$envf" | tail -1 | cut -d= -f2-; return; fi
  docker images --format '{{.Repository}}:{{.Tag}}' monorepo-local/nginx 2>/dev/null | head -1
}

# Writes $2/run.sh (executed inside the container) and $2/main.conf for one case.
# options: context=main|http|server; envsubst=NAME=value[,NAME=value] (the official image's
# /etc/nginx/templates step: only the named variables are replaced, nginx's own $vars stay).
prepare_nginx() {
  python3 - "$1" "$2" "$3" <<'PY'
import os, re, shutil, sys
src, work, opts = sys.argv[1], sys.argv[2], sys.argv[3]
o = dict(kv.split("=", 1) for kv in opts.split(";") if kv)
text = open(src, encoding="utf-8").read()
if "envsubst" in o:
    for pair in o["envsubst"].split(","):
        k, v = pair.split("=", 1)
        text = text.replace("${%s}" % k, v).replace("$%s" % k, v)
name = os.path.basename(src)
if name.endswith(".template"):
    name = name[: -len(".template")]
open(os.path.join(work, name), "w", encoding="utf-8").write(text)
ctx = o.get("context", "main")
if ctx == "main":
    main = name
else:
    main = "main.conf"
    inner = "include %s;" % name
    if ctx == "server":
        inner = "server { listen 8080; %s }" % inner
    open(os.path.join(work, main), "w").write("events {}\nhttp {\n%s\n}\n" % inner)
# Directives only, comments stripped (good enough to find names; nginx itself is the oracle).
code = "\n".join(l.split("#", 1)[0] for l in text.splitlines())
stubs = [m for m in re.findall(r"\binclude\s+([^;\s]+)\s*;", code) if not re.search(r"[*?\[]", m)]
upstreams = set(re.findall(r"\bupstream\s+([\w.-]+)\s*\{", code))
hosts = set()
for m in re.findall(r"\bserver\s+([A-Za-z][\w.-]*):\d+", code):
    hosts.add(m)
for m in re.findall(r"\b(?:proxy_pass|fastcgi_pass|grpc_pass|uwsgi_pass)\s+(?:[a-z]+://)?([A-Za-z][\w.-]*)", code):
    hosts.add(m)
hosts -= upstreams | {"localhost", "unix"}
users = set(re.findall(r"^\s*user\s+(\w+)", code, re.M))
lines = ["set -e", "cd /case", "mkdir -p logs"]
for u in sorted(users):
    lines.append("id %s >/dev/null 2>&1 || useradd -r -M -s /usr/sbin/nologin %s" % (u, u))
if hosts:
    lines.append("echo '127.0.0.1 %s' >> /etc/hosts" % " ".join(sorted(hosts)))
for s in stubs:
    p = s if s.startswith("/") else "/case/" + s
    base = os.path.basename(s)
    lines.append("if [ ! -e %s ]; then mkdir -p $(dirname %s); if [ -e /etc/nginx/%s ]; then cp /etc/nginx/%s %s; else : > %s; fi; fi" % (p, p, base, base, p, p))
lines.append("exec nginx -t -p /case/ -c /case/%s" % main)
open(os.path.join(work, "run.sh"), "w").write("\n".join(lines) + "\n")
PY
}

IMAGE=""
while IFS=$'\t' read -r file kind role repo path commit licence oracle notes; do
  [ "$file" = file ] && continue
  [ "$role" = case ] || continue
  case "$file" in *"$FILTER"*) ;; *) continue ;; esac
  abs="$ROOT/$file"; out="$TMP/out"; : > "$out"
  case "$kind" in
    compose)
      if docker compose -f "$abs" --project-directory "$(dirname "$abs")" config -q >"$out" 2>&1; then say ok "$file" "$out"; else say fail "$file" "$out"; fi ;;
    nginx)
      [ -n "$IMAGE" ] || IMAGE=$(nginx_image)
      if [ -z "$IMAGE" ]; then echo "no NGINX_IMAGE found (run cargo xtask images bootstrap)" > "$out"; say fail "$file" "$out"; continue; fi
      work="$TMP/nginx.$RANDOM"; mkdir -p "$work"
      prepare_nginx "$abs" "$work" "$oracle" >"$out" 2>&1
      if docker run --rm --network none -v "$work:/case" "$IMAGE" sh /case/run.sh >>"$out" 2>&1; then say ok "$file" "$out"; else say fail "$file" "$out"; fi ;;
    openssl)
      envs=(); ext=()
      IFS=';' read -ra kvs <<< "$oracle"
      for kv in "${kvs[@]}"; do
        case "$kv" in env=*) IFS=',' read -ra e <<< "${kv#env=}"; envs+=("${e[@]}") ;; extensions=*) ext=(-extensions "${kv#extensions=}") ;; esac
      done
      ok=1
      for x509 in "" "-x509"; do
        # shellcheck disable=SC2086
        (cd "$(dirname "$abs")" && env "${envs[@]}" openssl req $x509 -config "$abs" -new -newkey ec \
          -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null -subj /CN=x -out /dev/null ${x509:+"${ext[@]}"}) >>"$out" 2>&1 || ok=0
      done
      if [ $ok = 1 ]; then say ok "$file" "$out"; else say fail "$file" "$out"; fi ;;
    *) echo "unknown kind $kind" > "$out"; say fail "$file" "$out" ;;
  esac
done < "$ROOT/SOURCES.tsv"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
