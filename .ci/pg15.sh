#!/usr/bin/env bash
# Two private PostgreSQL 15 clusters, source and target: see .ci/pgpair.sh.
#   .ci/pg15.sh [start|stop|status]
exec bash "$(dirname "$0")/pgpair.sh" 15 "$@"
