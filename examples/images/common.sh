# Shared by the image builders (sourced, not run): where the image goes, and the podman command that
# reaches it. Set `default_tag` before sourcing. Options (or the same in the environment):
#   --url unix:///path/podman.sock (PODMAN_URL)   a running Podman service
#   --root DIR --runroot DIR (PODMAN_ROOT, PODMAN_RUNROOT)   a storage pair used directly
#   --tag NAME (IMAGE_TAG)   --force: rebuild even if the image exists

usage() {
    echo "usage: $0 [--url unix:///path.sock | --root DIR --runroot DIR] [--tag NAME] [--force]" >&2
    exit 2
}

url="${PODMAN_URL:-}"
root="${PODMAN_ROOT:-}"
runroot="${PODMAN_RUNROOT:-}"
tag="${IMAGE_TAG:-${default_tag:?set default_tag before sourcing common.sh}}"
force=0

while [ $# -gt 0 ]; do
    case "$1" in
        --url) url="${2:?}"; shift 2 ;;
        --root) root="${2:?}"; shift 2 ;;
        --runroot) runroot="${2:?}"; shift 2 ;;
        --tag) tag="${2:?}"; shift 2 ;;
        --force) force=1; shift ;;
        -h|--help) usage ;;
        *) echo "unknown argument: $1" >&2; usage ;;
    esac
done

command -v podman >/dev/null || { echo "error: podman is not installed" >&2; exit 1; }
podman_cmd=(podman)
if [ -n "$url" ]; then
    podman_cmd+=(--remote --url "$url")
else
    [ -n "$root" ] && podman_cmd+=(--root "$root")
    [ -n "$runroot" ] && podman_cmd+=(--runroot "$runroot")
fi

# Idempotence: an image already there is left alone unless --force.
if [ "$force" = 0 ] && "${podman_cmd[@]}" image exists "$tag" 2>/dev/null; then
    echo "$tag already present"
    exit 0
fi
