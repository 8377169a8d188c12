#!/usr/bin/env bash
# Two private PostgreSQL 17 clusters, source and target: see .ci/pgpair.sh.
#   .ci/pg17.sh [start|stop|status]
exec bash "$(dirname "$0")/pgpair.sh" 17 "$@"
