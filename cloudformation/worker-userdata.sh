#!/bin/bash
# worker-userdata.sh: bootstraps one CloudMover worker instance. The head node's ec2
# fleet (headnode/ec2fleet.py, headnode/userdata.py) renders it as the user data of
# every worker it launches: the settings below replace the SETTINGS marker line and
# the worker's environment the WORKER_ENV marker line (each marker appears once).
# cloud-init runs it once, as root.
#
# It installs CloudMover into a virtualenv (apt on Debian/Ubuntu, dnf on Amazon
# Linux), reads the instance's region and id from the instance metadata (IMDSv2),
# fetches the head node's secret key from an SSM SecureString parameter with the
# instance role (the key opens the credentials sealed into tasks; it is never in
# this user data), writes the worker's environment (mode 0640, root and the service
# user only) and runs `cloudmover-worker --region R` as the systemd service
# cloudmover-worker (restarted on failure and at boot).
#
# Rendered settings:
#   CM_REGION            the region whose task queue the worker drains
#   CM_SOFTWARE          a CloudMover version (0.1.0) or a pip requirement
#                        (git+https://…@v0.1.0, https://…/cloudmover-0.1.0.tar.gz)
#   CM_HEAD_NODE         the head node's address on the region's path (private or public IP)
#   CM_SECRET_PARAMETER  the SSM parameter holding the secret key, in the instance's region
#
# For running it off EC2 (tests); cloud-init sets none of these:
#   CLOUDMOVER_HOME            venv, environment file, log (default /opt/cloudmover)
#   CLOUDMOVER_VENV            the virtualenv (default $CLOUDMOVER_HOME/venv)
#   CLOUDMOVER_SKIP_INSTALL=1  use the CloudMover already installed in $CLOUDMOVER_VENV
#   CLOUDMOVER_IMDS_URL        the instance metadata service (default http://169.254.169.254)
#   CLOUDMOVER_SSM_ENDPOINT_URL  an SSM endpoint other than AWS's
# Without systemd the worker starts in the background (nohup); its pid goes to
# $CLOUDMOVER_HOME/worker.pid and its output to $CLOUDMOVER_HOME/worker.log.
set -Eeuo pipefail

# @@SETTINGS@@

: "${CM_REGION:?}" "${CM_SOFTWARE:?}" "${CM_HEAD_NODE:?}" "${CM_SECRET_PARAMETER:?}"
CM_HOME=${CLOUDMOVER_HOME:-/opt/cloudmover}
CM_VENV=${CLOUDMOVER_VENV:-$CM_HOME/venv}
IMDS=${CLOUDMOVER_IMDS_URL:-http://169.254.169.254}

say() { echo "cloudmover-worker bootstrap: $*" >&2; }
trap 'say "failed at line $LINENO"' ERR

# -- where am I: instance metadata with IMDSv2 (a session token first) -------------------
token=$(curl -sSf --retry 10 --retry-connrefused --max-time 5 -X PUT \
    -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' "$IMDS/latest/api/token")
imds() {
    curl -sSf --retry 5 --max-time 5 -H "X-aws-ec2-metadata-token: $token" "$IMDS/latest/meta-data/$1"
}
instance_region=$(imds placement/region)
instance_id=$(imds instance-id)
say "instance $instance_id in $instance_region: worker for region $CM_REGION, head node $CM_HEAD_NODE"
if [ "$instance_region" != "$CM_REGION" ]; then
    say "warning: this instance runs in $instance_region, not in $CM_REGION whose queue it drains"
fi

# -- CloudMover itself -------------------------------------------------------------------
install_cloudmover() {
    local python requirement
    if command -v apt-get >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q python3-venv python3-dev build-essential git   # the codec compiles
        python=python3
    else
        dnf install -y python3.11 python3.11-devel gcc gcc-c++ git
        python=python3.11
    fi
    case "$CM_SOFTWARE" in
        [0-9]*) requirement="cloudmover==$CM_SOFTWARE" ;;
        *) requirement="$CM_SOFTWARE" ;;
    esac
    "$python" -m venv "$CM_VENV"
    "$CM_VENV/bin/python" -m pip install --quiet --upgrade pip
    "$CM_VENV/bin/python" -m pip install --quiet "$requirement"
}
install -d -m 0755 "$CM_HOME"
if [ "${CLOUDMOVER_SKIP_INSTALL:-}" = 1 ]; then
    say "using the CloudMover installed in $CM_VENV"
else
    install_cloudmover
fi

# -- the secret key, with the instance role (its credentials may take a moment to appear) --
read_secret() {
    "$CM_VENV/bin/python" - "$instance_region" "$CM_SECRET_PARAMETER" <<'PY'
import os, sys
import boto3
ssm = boto3.client("ssm", region_name=sys.argv[1],
                   endpoint_url=os.environ.get("CLOUDMOVER_SSM_ENDPOINT_URL") or None)
print(ssm.get_parameter(Name=sys.argv[2], WithDecryption=True)["Parameter"]["Value"])
PY
}
secret=""
for attempt in 1 2 3 4 5 6 7 8 9 10; do
    if secret=$(read_secret); then break; fi
    say "reading $CM_SECRET_PARAMETER failed (attempt $attempt); retrying"
    sleep 3
done
[ -n "$secret" ] || { say "no secret key: the worker role must allow ssm:GetParameter on $CM_SECRET_PARAMETER"; exit 1; }

# -- the worker's environment and how it starts --------------------------------------------
env_file="$CM_HOME/worker.env"
(
    umask 077
    {
        cat <<'CLOUDMOVER_ENV'
@@WORKER_ENV@@
CLOUDMOVER_ENV
        printf 'AWS_DEFAULT_REGION=%q\n' "$instance_region"
        printf 'CLOUDMOVER_SEALING_KEY=%q\n' "$secret"
    } >"$env_file.new"
    mv "$env_file.new" "$env_file"
)
{
    echo '#!/bin/bash'
    echo 'set -a'
    printf '. %q\n' "$env_file"
    echo 'set +a'
    printf 'exec %q --region %q\n' "$CM_VENV/bin/cloudmover-worker" "$CM_REGION"
} >"$CM_HOME/run-worker"
chmod 0755 "$CM_HOME/run-worker"

if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    id cloudmover >/dev/null 2>&1 || useradd --system --home-dir "$CM_HOME" --shell /usr/sbin/nologin cloudmover
    chown root:cloudmover "$env_file"
    chmod 0640 "$env_file"
    cat >/etc/systemd/system/cloudmover-worker.service <<EOF
[Unit]
Description=CloudMover worker for region $CM_REGION (head node $CM_HEAD_NODE)
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
User=cloudmover
Group=cloudmover
ExecStart=$CM_HOME/run-worker
Restart=always
RestartSec=5
TimeoutStopSec=300
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=strict
ProtectHome=yes

[Install]
WantedBy=multi-user.target
EOF
    systemctl daemon-reload
    systemctl enable --now cloudmover-worker.service
    say "started the systemd service cloudmover-worker"
else
    nohup "$CM_HOME/run-worker" >>"$CM_HOME/worker.log" 2>&1 </dev/null &
    echo $! >"$CM_HOME/worker.pid"
    say "no systemd: started the worker in the background (pid $!, log $CM_HOME/worker.log)"
fi
