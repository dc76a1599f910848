#!/bin/sh
# Emulates media-relay@.service's file-system sandbox for lifecycle.sh (no systemd as PID 1
# here), in the private mount namespace it is started in (`unshare -m`), then execs "$@":
#   ProtectSystem=strict          every mount read-only, but /proc and /dev
#   ProtectKernelTunables=yes     /proc/sys and /sys read-only
#   PrivateTmp=yes                an empty /tmp
#   ReadWritePaths=/sys/fs/bpf/media-relay /proc/sys/net, RuntimeDirectory=media-relay
#                                 writable again
# and fails if anything else it checks is still writable. Not emulated: PrivateDevices,
# ProtectKernelModules/Logs, ProtectControlGroups, ProtectClock, ProtectHostname and the
# syscall restrictions (namespaces, address families, W^X, personality).
set -eu

mkdir -p /run/media-relay /sys/fs/bpf/media-relay
awk '{print $2}' /proc/self/mounts | sort -u | while read -r mp; do
    case "$mp" in
    /proc | /proc/* | /dev | /dev/*) ;;
    *) mount -o remount,bind,ro "$mp" 2>/dev/null || true ;;
    esac
done
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
mount -t tmpfs -o mode=1777 tmpfs /tmp
for p in /run/media-relay /sys/fs/bpf/media-relay /proc/sys/net; do
    mount --bind "$p" "$p"
    mount -o remount,bind,rw "$p"
done

for p in /etc /usr/bin /var/lib /run /sys/fs/bpf /proc/sys/kernel/printk_ratelimit; do
    if [ -w "$p" ]; then
        echo "sandbox: $p is writable" >&2
        exit 1
    fi
done
for p in /run/media-relay /sys/fs/bpf/media-relay /proc/sys/net/ipv4/ip_local_reserved_ports; do
    if ! [ -w "$p" ]; then
        echo "sandbox: $p is not writable" >&2
        exit 1
    fi
done
exec "$@"
