#!/bin/sh
# Answers GET /cgi-bin/hello with the greeting baked in at build time.
printf 'Content-Type: application/json\r\n\r\n'
printf '{"greeting":"%s","database":"%s"}\n' "$(cat /srv/backend/greeting)" "${DATABASE_HOST:-unset}"
