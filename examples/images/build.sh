#!/usr/bin/env bash
# Build localhost/busybox:latest offline from Debian's busybox-static and load it into Podman.
#
# No registry is reachable from peapod's machines, so the images the examples and tests run are made
# here: a rootfs holding /bin/busybox (statically linked, so no libraries to copy) and a symlink per
# applet, a writable /tmp, a /var/www for httpd, and an /etc/passwd with root and nobody. It is
# imported as a single-layer image with `podman import`.
#
# Where the image goes (pick one; the default is the machine's default Podman storage):
#   --url unix:///path/podman.sock   a running Podman service (a node's own `podman system service`)
#   --root DIR --runroot DIR          a storage directory pair, used directly by the podman CLI
# The same can be given as PODMAN_URL, PODMAN_ROOT, PODMAN_RUNROOT in the environment.
#
# Idempotent: if the image already exists it is left alone (use --force to rebuild).
set -euo pipefail

default_tag=localhost/busybox:latest
# shellcheck source=examples/images/common.sh
. "$(dirname "$0")/common.sh"

busybox=/bin/busybox
if ! [ -x "$busybox" ] || ! "$busybox" --list >/dev/null 2>&1; then
    echo "error: $busybox missing; install the Debian package busybox-static" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/peapod-busybox.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,root,home,var/www,var/log,proc,sys,dev,run}
install -d -m 1777 "$rootfs/tmp"
install -m 0755 "$busybox" "$rootfs/bin/busybox"
# One symlink per applet, all in /bin so every PATH finds them; busybox picks the applet by argv[0].
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] && continue
    ln -sf busybox "$rootfs/bin/$applet"
done

cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
echo "hosts: files dns" >"$rootfs/etc/nsswitch.conf"
echo "peapod busybox image" >"$rootfs/var/www/index.html"

# Fixed owner and mtime so two builds of the same busybox give the same layer.
tar --numeric-owner --owner=0 --group=0 --mtime='2000-01-01 00:00:00' --sort=name \
    -C "$rootfs" -cf "$work/rootfs.tar" .

"${podman_cmd[@]}" import \
    --change 'CMD ["/bin/sh"]' \
    --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
    --message "peapod busybox from $("$busybox" 2>&1 | head -n1)" \
    "$work/rootfs.tar" "$tag" >/dev/null
echo "built $tag"
