#!/bin/sh
# Starts Redis with one ACL user per service (deploy/redis/users.acl.template, generated from
# shared/streams.py by `python -m tools.redis_acl`), filling in the passwords from the
# environment. The rendered file stays inside the container, readable by Redis only.
# (ACL_TEMPLATE, ACL_FILE and REDIS_SERVER let tests/integration/test_redis_acl.py run this
# very script against a local redis-server.)
set -eu
template=${ACL_TEMPLATE:-/etc/lianfang/redis/users.acl.template}
rendered=${ACL_FILE:-/tmp/users.acl}
for var in REDIS_ADMIN_PASSWORD REDIS_PASSWORD_INTAKE REDIS_PASSWORD_DISPATCH \
           REDIS_PASSWORD_VOLUNTEERS REDIS_PASSWORD_NOTIFY; do
  eval "value=\${$var:-}"
  [ -n "$value" ] || { echo "redis: $var is not set" >&2; exit 1; }
  case "$value" in *[!A-Za-z0-9_-]*) echo "redis: $var must be URL-safe (A-Z a-z 0-9 _ -)" >&2; exit 1;; esac
done
# The AOF fsync is chosen per deployment (REDIS_APPENDFSYNC): everysec or always. `no` leaves
# it to the kernel (some 30 s), and a power cut could lose incidents already acknowledged.
previous=
for arg in "$@"; do
  if [ "$previous" = --appendfsync ]; then
    case "$arg" in everysec|always) ;; *) echo "redis: REDIS_APPENDFSYNC must be everysec or always, not '$arg'" >&2; exit 1;; esac
  fi
  previous=$arg
done
umask 077
sed -e "s/\${REDIS_ADMIN_PASSWORD}/$REDIS_ADMIN_PASSWORD/" \
    -e "s/\${REDIS_PASSWORD_INTAKE}/$REDIS_PASSWORD_INTAKE/" \
    -e "s/\${REDIS_PASSWORD_DISPATCH}/$REDIS_PASSWORD_DISPATCH/" \
    -e "s/\${REDIS_PASSWORD_VOLUNTEERS}/$REDIS_PASSWORD_VOLUNTEERS/" \
    -e "s/\${REDIS_PASSWORD_NOTIFY}/$REDIS_PASSWORD_NOTIFY/" \
    "$template" > "$rendered"
exec "${REDIS_SERVER:-redis-server}" "$@" --aclfile "$rendered"
