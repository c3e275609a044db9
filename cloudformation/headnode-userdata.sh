#!/bin/bash
# headnode-userdata.sh: installs the CloudMover head node on Amazon Linux 2023 and
# runs it as the systemd service cloudmover.service (HTTPS on port 9090, restarted
# on failure and started at every boot). cloud-init runs it once, as root.
#
# cloudformation/build.py embeds this file in cloudmover.yaml; CloudFormation puts
# these settings before it (set them yourself to run it by hand on an instance):
#   CM_STACK_NAME, CM_REGION, CM_RESOURCE   the stack, its region and the instance's
#                                           logical id, for cfn-signal
#   CM_SOFTWARE                  a CloudMover version (0.1.0) or a pip requirement
#                                (git+https://…@v0.1.0, https://…/cloudmover-0.1.0.tar.gz)
#   CM_WORKER_INSTANCE_PROFILE   the instance profile the head node gives its workers
set -Eeuo pipefail

: "${CM_STACK_NAME:?}" "${CM_REGION:?}" "${CM_RESOURCE:?}" "${CM_SOFTWARE:?}" "${CM_WORKER_INSTANCE_PROFILE:?}"
CM_HOME=/opt/cloudmover          # the virtualenv holding CloudMover
CM_DATA=/var/lib/cloudmover      # DATA_DIR: database, queue, certificate, secrets
CM_ETC=/etc/cloudmover
CM_UNIT=/etc/systemd/system/cloudmover.service

# Tell CloudFormation how the installation went: the stack completes only once the
# head node answers, and a failed step rolls the stack back with this instance's log.
signal() {
    /opt/aws/bin/cfn-signal --exit-code "$1" --stack "$CM_STACK_NAME" --resource "$CM_RESOURCE" \
        --region "$CM_REGION" || true
}
trap 'echo "cloudmover: installation failed at line $LINENO" >&2; signal 1' ERR

# Instance metadata with IMDSv2 (a session token first).
imds() {
    local token
    token=$(curl -sSf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' \
        http://169.254.169.254/latest/api/token)
    curl -sSf -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"
}

# Python 3.11 and a compiler: the image codec's Cython kernels compile at install.
dnf install -y python3.11 python3.11-pip python3.11-devel gcc gcc-c++ git aws-cfn-bootstrap

id cloudmover >/dev/null 2>&1 || useradd --system --home-dir "$CM_DATA" --shell /sbin/nologin cloudmover
install -d -m 0700 -o cloudmover -g cloudmover "$CM_DATA"
install -d -m 0755 "$CM_ETC"

case "$CM_SOFTWARE" in
    [0-9]*) requirement="cloudmover==$CM_SOFTWARE" ;;
    *) requirement="$CM_SOFTWARE" ;;
esac
python3.11 -m venv "$CM_HOME"
"$CM_HOME/bin/python" -m pip install --quiet --upgrade pip
"$CM_HOME/bin/python" -m pip install --quiet "$requirement"

# The self-signed certificate, named for the public DNS name (the private address
# when the instance has none). Replace DATA_DIR/tls/cert.pem and key.pem with a
# CA-issued pair to end the browser's warning (docs/aws.md).
host=$(imds public-hostname || imds local-ipv4)
runuser -u cloudmover -- "$CM_HOME/bin/python" -c \
    'import sys; from headnode.server import ensure_certificate; ensure_certificate(sys.argv[1], sys.argv[2])' \
    "$CM_DATA" "$host"

# Settings (headnode/config.py reads CLOUDMOVER_*): SQS queues and the SNS events
# topic in this region, named with the cloudmover- prefix the IAM roles allow; workers
# are EC2 instances with the stack's worker profile. The first admin's password is
# this instance's id, which the head node reads from the instance metadata itself.
cat >"$CM_ETC/cloudmover.env" <<EOF
CLOUDMOVER_DATA_DIR=$CM_DATA
CLOUDMOVER_HOST=0.0.0.0
CLOUDMOVER_PORT=9090
CLOUDMOVER_TLS=true
CLOUDMOVER_PUBLIC_URL=https://$host:9090
CLOUDMOVER_REGION=$CM_REGION
CLOUDMOVER_BUS_URL=sqs://
CLOUDMOVER_BUS_OPTIONS='{"region": "$CM_REGION"}'
CLOUDMOVER_QUEUE_PREFIX=cloudmover-
CLOUDMOVER_FLEET=ec2
CLOUDMOVER_EC2_WORKER_PROFILE=$CM_WORKER_INSTANCE_PROFILE
CLOUDMOVER_SOFTWARE_VERSION=$CM_SOFTWARE
EOF
chmod 0644 "$CM_ETC/cloudmover.env"

cat >"$CM_UNIT" <<EOF
[Unit]
Description=CloudMover head node (HTTPS on port 9090)
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
User=cloudmover
Group=cloudmover
EnvironmentFile=$CM_ETC/cloudmover.env
ExecStart=$CM_HOME/bin/cloudmover serve
Restart=always
RestartSec=5
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=strict
ProtectHome=yes
ReadWritePaths=$CM_DATA

[Install]
WantedBy=multi-user.target
EOF
systemctl daemon-reload
systemctl enable --now cloudmover.service

# Any HTTP answer on 9090 means the head node serves; give it two minutes.
for _ in $(seq 60); do
    if curl -sk -o /dev/null https://127.0.0.1:9090/; then
        signal 0
        exit 0
    fi
    sleep 2
done
echo "cloudmover: the head node did not answer on https://127.0.0.1:9090 (journalctl -u cloudmover)" >&2
signal 1
exit 1
