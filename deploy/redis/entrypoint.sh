#!/bin/sh
# Starts Redis with one ACL user per service (deploy/redis/users.acl.template, generated from
# shared/streams.py by `python -m tools.redis_acl`), filling in the passwords from the
# environment. The rendered file stays inside the container, readable by Redis only.
#
# Started as root (the container: the image's docker-entrypoint.sh steps down to the redis
# user only for a command that is `redis-server`, and this one is `sh`), it writes the ACL
# file, hands the data volume to the redis user and starts Redis as that user, through
# setpriv (util-linux: in every Debian-based redis image, whichever of gosu or setpriv the
# image's own entrypoint uses).
# (ACL_TEMPLATE, ACL_FILE, REDIS_SERVER and REDIS_USER let tests/integration/test_redis_acl.py
# run this very script against a local redis-server; REDIS_USER empty: Redis runs as whoever
# started the script.)
set -eu
template=${ACL_TEMPLATE:-/etc/lianfang/redis/users.acl.template}
rendered=${ACL_FILE:-/tmp/users.acl}
server=${REDIS_SERVER:-redis-server}
run_as=${REDIS_USER-redis}
# Each user's password: 16 characters or more, as ADMIN_TOKEN (every container on compose's
# network reaches Redis), and its own (one value in two variables lets either service log in
# as the other, and its user's limits protect nothing). Named by its variable, never shown.
seen=
for var in REDIS_ADMIN_PASSWORD REDIS_PASSWORD_INTAKE REDIS_PASSWORD_DISPATCH \
           REDIS_PASSWORD_VOLUNTEERS REDIS_PASSWORD_NOTIFY; do
  eval "value=\${$var:-}"
  [ -n "$value" ] || { echo "redis: $var is not set" >&2; exit 1; }
  case "$value" in *[!A-Za-z0-9_-]*) echo "redis: $var must be URL-safe (A-Z a-z 0-9 _ -)" >&2; exit 1;; esac
  [ "${#value}" -ge 16 ] || { echo "redis: $var must be at least 16 characters" >&2; exit 1; }
  for other in $seen; do
    eval "earlier=\${$other}"
    [ "$value" != "$earlier" ] || {
      echo "redis: $var is the same as $other: each user needs a password of its own" >&2
      exit 1; }
  done
  seen="$seen $var"
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
if [ "$(id -u)" = 0 ] && [ -n "$run_as" ]; then
  gid=$(id -g "$run_as")
  # Root keeps the file (a restart of the container writes it again, in the container's
  # /tmp), the redis group reads it, no one else does.
  chgrp "$gid" "$rendered"
  chmod 640 "$rendered"
  # Redis's dir is its working directory, the image's /data (the volume): a volume written
  # by a Redis running as root holds AOF files only root may open.
  find /data \! -user "$run_as" -exec chown "$run_as:$gid" {} +
  exec setpriv --reuid="$run_as" --regid="$gid" --clear-groups -- \
      "$server" "$@" --aclfile "$rendered"
fi
exec "$server" "$@" --aclfile "$rendered"
