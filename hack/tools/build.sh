#!/usr/bin/env bash
# Builds the release tools pinned in hack/tools/go.mod (goreleaser, krew and
# krew's validate-krew-manifest) into a cache directory keyed on the pins, and
# prints that directory. A second run with the same go.mod/go.sum builds nothing.
#
# Building goreleaser takes minutes on two cores, so the binaries are kept in
#   ${TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubectl-trace-svc/tools}/<key>/
# where <key> is a hash of go.mod and go.sum: CI rebuilds only when a pin changes.
set -euo pipefail
cd "$(dirname "$0")"

key=$(cat go.mod go.sum | sha256sum | cut -c1-16)
root=${TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubectl-trace-svc/tools}
dir=$root/$key

tools=(
	goreleaser=github.com/goreleaser/goreleaser/v2
	krew=sigs.k8s.io/krew/cmd/krew
	validate-krew-manifest=sigs.k8s.io/krew/cmd/validate-krew-manifest
)

have=true
for t in "${tools[@]}"; do [ -x "$dir/${t%%=*}" ] || have=false; done
if $have; then
	echo "$dir"
	exit 0
fi

mkdir -p "$root"
tmp=$(mktemp -d "$root/.build.XXXXXX")
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
# -mod=readonly: build exactly the pinned versions, whatever GOFLAGS says.
for t in "${tools[@]}"; do
	name=${t%%=*} tool=${t#*=}
	echo "building $name (pinned in hack/tools/go.mod) into $dir" >&2
	CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags='-s -w' -o "$tmp/$name" "$tool"
done
echo "tools built in $((SECONDS - start))s" >&2
# Publish the finished set in one step, so an interrupted build is never reused,
# and drop the sets built for older pins (goreleaser alone is ~100 MB).
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
for old in "$root"/*; do
	[ "$old" = "$dir" ] || rm -rf "$old"
done
echo "$dir"
