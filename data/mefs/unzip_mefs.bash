#!/usr/bin/env bash
# Extract the MEFs datasets of the original o2vae repository and check them with our dataset checks.
# Put mefs_scaled.tar.gz and/or mefs_not_scaled.tar.gz in this folder first (see README.md here).
# Usage: bash data/mefs/unzip_mefs.bash   (MEFS_DIR=DIR: tarballs in, and extract to, DIR instead)
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$(cd "${MEFS_DIR:-$repo_root/data/mefs}" && pwd)"
PY="${PY:-$repo_root/.venv/bin/python}"
[ -x "$PY" ] || PY=python3

cd "$here"
found=0
for tarball in mefs_scaled.tar.gz mefs_not_scaled.tar.gz; do
    [ -f "$tarball" ] || continue
    found=1
    echo "extracting $tarball"
    # members with absolute paths or '..' are refused by GNU tar; no owners or permissions are kept
    tar --extract --gzip --file "$tarball" --no-same-owner --no-same-permissions
done
if [ "$found" = 0 ]; then
    cat >&2 <<'MSG'
error: no MEFs tarball in the MEFs folder (expected mefs_scaled.tar.gz and/or mefs_not_scaled.tar.gz).
The MEFs data (mouse embryonic fibroblasts on micropatterns, the Micropattern MEF LMNA image set)
come with the original o2vae repository (github.com/jmhb0/o2vae, data/mefs/), and its
segmentations with the Zenodo record 7388245. Copy the tarballs here and run this script again.
MSG
    exit 1
fi

# every extracted folder that holds an X_train file is a dataset: check it as training would
cd "$repo_root"
status=0
while IFS= read -r dir; do
    "$PY" -m data.summary "$dir" || status=1
done < <(find "$here" -mindepth 2 -name 'X_train.*' -printf '%h\n' | sort -u)
exit "$status"
