#!/bin/sh
# PID 2 of an embedded server (tini is PID 1): start the services the tenantctl_server
# role enabled, then run sshd in the foreground, bound only to the server's address.
set -eu
: "${TENANTCTL_ADDRESS:?address of this server}"
: "${TENANTCTL_AUTHORIZED_KEY:?public key allowed to log in as root}"

install -d -m 0700 /root/.ssh
printf '%s\n' "$TENANTCTL_AUTHORIZED_KEY" > /root/.ssh/authorized_keys
chmod 0600 /root/.ssh/authorized_keys

# A host key of its own, generated on first start.
if [ ! -s /etc/ssh/ssh_host_ed25519_key ]; then
    ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
fi

cat > /etc/ssh/tenantctl_sshd_config <<CONF
ListenAddress ${TENANTCTL_ADDRESS}:22
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile .ssh/authorized_keys
UsePAM no
PidFile /run/sshd.pid
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
CONF
# Tenants' SFTP (the role's Match block, issue 14) survives a container restart; the
# markers are the role's, so its next run finds the Include in place.
[ -r /etc/ssh/tenantctl-tenants.conf ] && printf '%s\n' '# BEGIN tenantctl tenants (SFTP)' \
    'Include /etc/ssh/tenantctl-tenants.conf' '# END tenantctl tenants (SFTP)' >> /etc/ssh/tenantctl_sshd_config

# Services the role enabled (one name a line), after a container restart.
# /etc/tenantctl/autostart.d/* name services the controller enabled later (PITR archivers).
for list in /etc/tenantctl/autostart /etc/tenantctl/autostart.d/*; do
    [ -r "$list" ] || continue
    while read -r svc; do
        [ -n "$svc" ] && service "$svc" start || true
    done < "$list"
done

install -d -m 0755 /run/sshd
exec /usr/sbin/sshd -D -e -f /etc/ssh/tenantctl_sshd_config
