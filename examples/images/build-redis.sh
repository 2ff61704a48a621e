#!/usr/bin/env bash
# Build localhost/redis:latest offline from Debian's redis packages and load it into Podman.
#
# No registry is reachable from peapod's machines, so this image is assembled from Debian packages: the
# .debs of redis-server and redis-tools (and of every library they need that the host does not have,
# such as libjemalloc2 and liblzf1) are fetched with `apt-get download` into a temporary folder and
# unpacked with `dpkg -x` -- nothing is installed on the machine, no redis service starts here. The
# rootfs gets the redis programs, every shared library `ldd` says they load (from those .debs or from
# the host) plus the dynamic loader, busybox-static with its applet links (so the image has a shell),
# /etc/passwd and /etc/group with root, redis (999) and nobody, a /data owned by redis and a /tmp. It is
# imported as a single-layer image with `podman import`:
#   CMD ["redis-server", "--protected-mode", "no"], WORKDIR /data, no ENTRYPOINT, runs as root.
#
# Where the image goes (pick one; the default is the machine's default Podman storage):
#   --url unix:///path/podman.sock   a running Podman service (a node's own `podman system service`)
#   --root DIR --runroot DIR          a storage directory pair, used directly by the podman CLI
# The same can be given as PODMAN_URL, PODMAN_ROOT, PODMAN_RUNROOT in the environment.
#
# Idempotent: if the image already exists it is left alone (use --force to rebuild).
#
# .debs already in apt's cache (/var/cache/apt/archives) with the right version and checksum are used
# instead of downloading them again. Exit status 75 means the packages could not be downloaded (no
# route to the Debian archive); anything else non-zero is a real failure.
set -euo pipefail

EXIT_UNAVAILABLE=75

default_tag=localhost/redis:latest
# shellcheck source=examples/images/common.sh
. "$(dirname "$0")/common.sh"

die() { echo "error: $*" >&2; exit 1; }

busybox=/bin/busybox
if ! [ -x "$busybox" ] || ! "$busybox" --list >/dev/null 2>&1; then
    die "$busybox missing; install the Debian package busybox-static"
fi
for tool in podman apt-get apt-cache dpkg-deb dpkg-query ldd tar; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done


work=$(mktemp -d "${TMPDIR:-/tmp}/peapod-redis.XXXXXX")
trap 'rm -rf "$work"' EXIT
debs="$work/debs"     # downloaded .debs
pkgs="$work/pkgs"     # their contents, all unpacked into one tree
rootfs="$work/rootfs"
mkdir -p "$debs" "$pkgs" "$rootfs"
if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then
    # apt downloads as its unprivileged _apt user; let it write there (otherwise it warns and runs as root).
    chmod 0711 "$work"
    chown _apt "$debs"
fi

# --- the packages -----------------------------------------------------------------------------------

# apt's messages when the archive cannot be reached at all (as opposed to a 404, a bad checksum...).
network_errors='Temporary failure resolving|Could not resolve|Could not connect|Unable to connect'
network_errors+='|Cannot initiate the connection|Connection timed out|Connection failed|Connection refused'
network_errors+='|Network is unreachable|No route to host'

# fail WHAT OUTPUT: stop, with status $EXIT_UNAVAILABLE when OUTPUT shows the archive is unreachable.
fail() {
    if grep -qE "$network_errors" <<<"$2"; then
        printf '%s\nerror: %s: the Debian archive is not reachable\n' "$2" "$1" >&2
        exit "$EXIT_UNAVAILABLE"
    fi
    die "$1: $2"
}

updated=0
update_output=""
update_lists() {
    local out
    updated=1
    out=$(apt-get update -qq 2>&1) || fail "apt-get update failed" "$out"
    # apt-get update succeeds even when every source failed; keep its complaints for fail().
    update_output="$out"
}

candidate() { apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }'; }

cand=$(candidate redis-tools)
if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
    # A machine whose package lists were never fetched (or were cleaned): fetch them once.
    [ "$(id -u)" = 0 ] || die "apt knows no redis-tools package; run 'apt-get update' as root first"
    echo "apt has no package lists for redis-tools; running apt-get update" >&2
    update_lists
    cand=$(candidate redis-tools)
    if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
        fail "no redis-tools package in apt's sources after apt-get update" "$update_output"
    fi
fi

# apt's own download cache; APT_ARCHIVES= (empty) or another folder to bypass it.
if [ -z "${APT_ARCHIVES+set}" ]; then
    eval "$(apt-config shell APT_ARCHIVES Dir::Cache::archives/d)"
fi
archives="${APT_ARCHIVES:-}"
archives="${archives%/}"

installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }

download() { (cd "$debs" && apt-get download -qq "$@" 2>&1); }

# fetch PKG...: put each package's .deb in $debs, from apt's cache when it holds the very same file.
fetch() {
    local uris line file sum out to_download=()
    uris=$(apt-get download --print-uris "$@" 2>&1) || die "apt cannot locate $*: $uris"
    while read -r line; do
        # 'URI' FILENAME SIZE SHA256:HEX
        read -r _ file _ sum <<<"$line"
        if [ -n "$archives" ] && [ -f "$archives/$file" ] && [ "${sum#SHA256:}" != "$sum" ] \
            && echo "${sum#SHA256:}  $archives/$file" | sha256sum --check --status; then
            cp "$archives/$file" "$debs/"
        else
            to_download+=("${file%%_*}")
        fi
    done < <(grep "^'" <<<"$uris")
    [ ${#to_download[@]} -gt 0 ] || return 0
    out=$(download "${to_download[@]}") && return 0
    # Stale package lists name versions the archive no longer has (404): refresh them once and retry.
    if ! grep -qE "$network_errors" <<<"$out" && [ "$(id -u)" = 0 ] && [ "$updated" = 0 ]; then
        echo "apt-get download failed; refreshing the package lists and trying again" >&2
        update_lists
        out=$(download "${to_download[@]}") && return 0
    fi
    fail "apt-get download ${to_download[*]} failed" "$out"
}

# The libraries a package depends on that the host lacks (alternatives: any installed one will do).
missing_libs() {
    local deps group alt name chosen groups alts
    deps=$(dpkg-deb -f "$1" Depends Pre-Depends | sed 's/^[A-Za-z-]*: //' | tr '\n' ',')
    IFS=',' read -ra groups <<<"$deps"
    for group in "${groups[@]}"; do
        chosen=""
        IFS='|' read -ra alts <<<"$group"
        for alt in "${alts[@]}"; do
            name=$(awk '{ sub(/:.*/, "", $1); print $1 }' <<<"$alt")
            [ -n "$name" ] || continue
            if installed "$name"; then chosen=""; break; fi
            [ -z "$chosen" ] && chosen="$name"
        done
        # Only shared-library packages matter in the image; adduser, lsb-base & co. do not.
        case "$chosen" in lib*) echo "$chosen" ;; esac
    done
}

fetch redis-server redis-tools
declare -A seen=([redis-server]=1 [redis-tools]=1)
pending=("$debs"/*.deb)
while [ ${#pending[@]} -gt 0 ]; do
    wanted=()
    for deb in "${pending[@]}"; do
        dpkg -x "$deb" "$pkgs"
        for lib in $(missing_libs "$deb"); do
            [ -n "${seen[$lib]:-}" ] && continue
            seen[$lib]=1
            wanted+=("$lib")
        done
    done
    pending=()
    if [ ${#wanted[@]} -gt 0 ]; then
        before=$(ls "$debs")
        fetch "${wanted[@]}"
        for deb in "$debs"/*.deb; do
            grep -qxF "$(basename "$deb")" <<<"$before" || pending+=("$deb")
        done
    fi
done

version=$(dpkg-deb -f "$(echo "$debs"/redis-tools_*.deb)" Version)

# --- the rootfs -------------------------------------------------------------------------------------

# Merged /usr, as on Debian 12: the binaries' ELF interpreter is /lib64/ld-linux-*.so.2.
mkdir -p "$rootfs"/usr/{bin,sbin,lib,lib64} "$rootfs"/{etc,root,data,proc,sys,dev,run,var/log}
for d in bin sbin lib lib64; do ln -s "usr/$d" "$rootfs/$d"; done
install -d -m 1777 "$rootfs/tmp"

# busybox first, so the redis programs win should an applet ever share a name with them.
install -m 0755 "$busybox" "$rootfs/usr/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] && continue
    ln -sf busybox "$rootfs/usr/bin/$applet"
done

# redis-server is a link to redis-check-rdb in Debian's packages: one binary that looks at argv[0].
# redis-check-aof is a second copy of it; link it too (and redis-sentinel, the same binary's third mode).
bin="$pkgs/usr/bin"
[ -L "$bin/redis-server" ] || [ -f "$bin/redis-server" ] || die "redis-server not found in the packages"
server=$(readlink -f "$bin/redis-server")
install -m 0755 "$server" "$rootfs/usr/bin/$(basename "$server")"
programs=("$server")
for prog in redis-server redis-check-rdb redis-check-aof redis-sentinel redis-cli redis-benchmark; do
    [ "$prog" = "$(basename "$server")" ] && continue
    src="$bin/$prog"
    if [ "$prog" = redis-sentinel ] || { [ -e "$src" ] && cmp -s "$(readlink -f "$src")" "$server"; }; then
        ln -sf "$(basename "$server")" "$rootfs/usr/bin/$prog"
    elif [ -f "$src" ]; then
        install -m 0755 "$src" "$rootfs/usr/bin/$prog"
        programs+=("$src")
    fi
done
[ -x "$rootfs/usr/bin/redis-cli" ] || die "redis-cli not found in the packages"

# Every library the programs load, found as the image will find them: the unpacked packages first,
# then the host. A library from the packages keeps its path with the unpack folder cut off.
libdirs=$(find "$pkgs" \( -type f -o -type l \) -name '*.so*' -printf '%h\n' | sort -u | paste -sd:)
declare -A libs=()
for prog in "${programs[@]}"; do
    out=$(LD_LIBRARY_PATH="$libdirs" ldd "$prog" 2>&1) || die "ldd $prog failed: $out"
    if grep -q 'not found' <<<"$out"; then
        die "libraries of $(basename "$prog") missing on the host and in its packages:
$(grep 'not found' <<<"$out")"
    fi
    while read -r path; do libs[$path]=1; done < <(awk '
        $2 == "=>" && $3 ~ /^\// { print $3 }    # libfoo.so.1 => /path (0x...)
        $1 ~ /^\// { print $1 }                  # /lib64/ld-linux-x86-64.so.2 (0x...): the loader
    ' <<<"$out")
done
for path in "${!libs[@]}"; do
    dest="${path#"$pkgs"}"
    mkdir -p "$rootfs$(dirname "$dest")"   # through the lib -> usr/lib links
    cp -L "$path" "$rootfs$dest"
done

# Check the result before importing it: the image's loader must run redis from the image's libraries.
if [ "$(id -u)" = 0 ]; then
    check=$("$rootfs/usr/bin/busybox" chroot "$rootfs" /usr/bin/redis-server --version 2>&1) ||
        die "redis-server does not run inside the rootfs: $check"
fi

cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
redis:x:999:999:redis:/data:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
redis:x:999:
nogroup:x:65534:
EOF
echo "hosts: files dns" >"$rootfs/etc/nsswitch.conf"

# Fixed owners and mtime so two builds from the same packages give the same layer; /data belongs to
# redis (uid 999) so a pod with runAsUser: 999 can save there. Appended separately: --owner is global.
tar_opts=(--numeric-owner --mtime='2000-01-01 00:00:00' --sort=name)
tar "${tar_opts[@]}" --owner=0 --group=0 --exclude=./data -C "$rootfs" -cf "$work/rootfs.tar" .
tar "${tar_opts[@]}" --owner=999 --group=999 --no-recursion -C "$rootfs" -rf "$work/rootfs.tar" ./data

"${podman_cmd[@]}" import --quiet \
    --change 'CMD ["redis-server", "--protected-mode", "no"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'WORKDIR /data' \
    --change 'EXPOSE 6379' \
    --message "peapod redis from Debian redis-server $version" \
    "$work/rootfs.tar" "$tag" >/dev/null
echo "built $tag (redis $version)"
