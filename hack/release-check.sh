#!/usr/bin/env bash
# "make release-check": proves that a release would work, without publishing.
#
#  1. builds the pinned release tools once (hack/tools/build.sh, cached);
#  2. goreleaser check, then a snapshot release into dist/ (every platform,
#     archives, checksums, the krew manifest), nothing published;
#  3. the linux/amd64 binary: static (CGO_ENABLED=0), -trimpath, and
#     "version -o json" reports the snapshot's version and commit;
#  4. the krew manifest goreleaser wrote (dist/krew/trace-svc.yaml) and the
#     krew-release-bot template (.krew.yaml, rendered against the snapshot):
#     krew's validate-krew-manifest, which also installs every platform with
#     krew from a local server over dist/ (the real URLs point at GitHub
#     releases that do not exist yet) and checks that a LICENSE is installed;
#  5. where kubectl is installed: "kubectl trace-svc <TAB>" through kubectl's
#     own plugin completion and the shipped kubectl_complete-trace_svc.
#
# Needs git and go; no network (krew downloads from a server on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."

export CGO_ENABLED=0
t0=$SECONDS
phase_start=$SECONDS
phase() {
	printf '\n--- %s (previous step %ss)\n' "$*" "$((SECONDS - phase_start))"
	phase_start=$SECONDS
}
fail() {
	echo "release-check: $*" >&2
	exit 1
}

phase "release tools (hack/tools/go.mod)"
tools=$(bash hack/tools/build.sh)
export PATH="$tools:$PATH"
goreleaser --version 2>/dev/null | grep -iE '^(GitVersion|goreleaser)' || true

# goreleaser reads the repository's URL ("git ls-remote --get-url", no network)
# and, for a snapshot, drops every git fact (commit, date) when there is none,
# as in a work tree that was never pushed. Give it the project's URL there.
if [ -z "$(git remote)" ]; then
	export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=remote.origin.url
	export GIT_CONFIG_VALUE_0=https://github.com/trace-svc/kubectl-trace-svc.git
fi

phase "goreleaser check"
goreleaser check

phase "goreleaser snapshot release (all platforms, not published)"
commit=$(git rev-parse HEAD)
goreleaser release --snapshot --clean --skip=publish --parallelism 2 >dist.log 2>&1 || {
	tail -n 50 dist.log
	fail "goreleaser release --snapshot failed (full log above)"
}
mv dist.log dist/goreleaser.log
meta=$(cat dist/metadata.json)
json_field() { sed -n "s/.*\"$1\": *\"\\([^\"]*\\)\".*/\\1/p" <<<"$meta"; }
version=$(json_field version)
tag=$(json_field tag)
[ -n "$version" ] && [ -n "$tag" ] || fail "no version or tag in dist/metadata.json"
echo "snapshot version $version, tag $tag, commit $commit"
[ "$(json_field commit)" = "$commit" ] || fail "goreleaser saw commit $(json_field commit), HEAD is $commit"
ls -l dist/*.tar.gz dist/*.zip dist/checksums.txt dist/krew/trace-svc.yaml
(cd dist && sha256sum --quiet -c checksums.txt) || fail "dist/checksums.txt does not match the archives"
for os in linux darwin windows; do
	for arch in amd64 arm64; do
		ext=tar.gz
		[ "$os" = windows ] && ext=zip
		archive=dist/kubectl-trace_svc_${tag}_${os}_${arch}.$ext
		[ -f "$archive" ] || fail "missing archive $archive"
	done
done
contents=$(tar -tzf "dist/kubectl-trace_svc_${tag}_linux_amd64.tar.gz" | sort | tr '\n' ' ')
[ "$contents" = 'LICENSE README.md kubectl-trace_svc kubectl_complete-trace_svc trace-svc-cluster ' ] || fail "linux/amd64 archive holds $contents"
listing=$(tar -tvzf "dist/kubectl-trace_svc_${tag}_linux_amd64.tar.gz")
for f in kubectl-trace_svc kubectl_complete-trace_svc trace-svc-cluster; do
	grep -q "^-rwxr-xr-x .* $f\$" <<<"$listing" || fail "$f is not executable in the archive: $listing"
done
for arch in amd64 arm64; do # a zip names its files uncompressed
	grep -qa 'trace-svc-cluster\.exe' "dist/kubectl-trace_svc_${tag}_windows_${arch}.zip" ||
		fail "the windows/$arch archive has no trace-svc-cluster.exe"
done

phase "linux/amd64 binaries: static, trimmed, report their version"
for bin in $(ls dist/kubectl-trace_svc_linux_amd64*/kubectl-trace_svc dist/trace-svc-cluster_linux_amd64*/trace-svc-cluster); do
	buildinfo=$(go version -m "$bin")
	grep -q 'build	CGO_ENABLED=0' <<<"$buildinfo" || fail "$bin: not built with CGO_ENABLED=0: $buildinfo"
	grep -q 'build	-trimpath=true' <<<"$buildinfo" || fail "$bin: not built with -trimpath"
	# -trimpath leaves -ldflags out of the build info: look for the symbol table.
	symbols=$(go tool nm "$bin" 2>&1 || true)
	grep -q 'no symbols' <<<"$symbols" || fail "$bin: has a symbol table (not linked with -s -w)"
	if command -v file >/dev/null; then
		info=$(file "$bin")
		echo "$info"
		grep -q 'statically linked' <<<"$info" || fail "$bin is not statically linked"
	fi
	got=$("$bin" version -o json)
	echo "$got"
	grep -q "\"version\": \"v$version\"" <<<"$got" || fail "version -o json does not report v$version"
	grep -q "\"commit\": \"$commit\"" <<<"$got" || fail "version -o json does not report commit $commit"
	grep -q '"platform": "linux/amd64"' <<<"$got" || fail "version -o json does not report linux/amd64"
done
# The plugin as kubectl runs it, from the unpacked archive: simulate runs in
# kubectl-trace_svc, anything else in trace-svc-cluster beside it.
unpacked=$(mktemp -d)
tar -xzf "dist/kubectl-trace_svc_${tag}_linux_amd64.tar.gz" -C "$unpacked"
help=$("$unpacked/kubectl-trace_svc" --help)
grep -q 'kubectl trace-svc \[command\]' <<<"$help" || fail "kubectl-trace_svc --help from the archive does not show the whole command tree: $help"
sim=$("$unpacked/kubectl-trace_svc" simulate --ruleset testdata/iptables/kube-proxy/v1.37.2/TestTracePacket/iptables-nft.save \
	--node-ip 192.168.0.2 --src 10.0.0.2 --dst 172.30.0.41 --dport 80)
grep -q '^Verdict DNAT' <<<"$sim" || fail "simulate from the archive does not DNAT: $sim"
rm -rf "$unpacked"

work=$(mktemp -d)
server_pid=
cleanup() {
	[ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

# Two small helpers of our own (hack/tools/serve, hack/tools/krewtemplate):
# a local server over dist/ for krew to download the archives from, and the
# krew-release-bot template renderer.
(cd hack/tools && GOFLAGS=-mod=readonly go build -o "$work/bin/" ./serve ./krewtemplate)
"$work/bin/serve" -dir dist >"$work/server.port" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 100); do [ -s "$work/server.port" ] && break; sleep 0.1; done
port=$(head -n 1 "$work/server.port")
[ -n "$port" ] || fail "local file server did not start: $(cat "$work/server.log")"
base=http://127.0.0.1:$port

# validate-krew-manifest runs "kubectl krew install --manifest ..." with a
# clean environment; kubectl would only exec kubectl-krew, so a shim does that
# and the check does not depend on a kubectl being installed.
mkdir -p "$work/shim"
cat >"$work/shim/kubectl" <<EOF
#!/bin/sh
[ "\$1" = krew ] || { echo "kubectl shim: only 'kubectl krew' is supported" >&2; exit 1; }
shift
exec "$tools/krew" "\$@"
EOF
chmod +x "$work/shim/kubectl"

validate() { # name, manifest: validate-krew-manifest wants the file named after the plugin
	mkdir -p "$work/$1"
	cp "$2" "$work/$1/trace-svc.yaml"
	PATH="$work/shim:$PATH" validate-krew-manifest -manifest "$work/$1/trace-svc.yaml" >"$work/$1.log" 2>&1 || {
		cat "$work/$1.log"
		fail "validate-krew-manifest rejected $2"
	}
	grep -E 'structural validation OK|installed fine' "$work/$1.log" | sed 's/^/  /'
}

phase "krew manifest from goreleaser: validate-krew-manifest"
manifest=dist/krew/trace-svc.yaml
release_url=https://github.com/trace-svc/kubectl-trace-svc/releases/download/$tag
for uri in $(sed -n 's/^ *uri: //p' "$manifest"); do
	case $uri in
	"$release_url"/*) [ -f "dist/${uri##*/}" ] || fail "$manifest: uri $uri names no archive in dist/" ;;
	*) fail "$manifest: uri $uri is not under $release_url" ;;
	esac
done
[ "$(grep -c '^ *uri: ' "$manifest")" = 6 ] || fail "$manifest: expected 6 platforms"
grep -q '^ *version: v'"$version"'$' "$manifest" || fail "$manifest: spec.version is not v$version"
echo "as written (structure only; its URLs are the future GitHub release):"
PATH="$work/shim:$PATH" validate-krew-manifest -skip-install -manifest "$manifest" 2>&1 | grep -E 'OK|overlapping|used' | sed 's/^/  /'
echo "with the archives served from dist/ (installs all platforms):"
sed "s#$release_url/#$base/#" "$manifest" >"$work/goreleaser.yaml"
validate goreleaser "$work/goreleaser.yaml"

phase "krew-release-bot template (.krew.yaml) rendered for $tag: validate-krew-manifest"
"$work/bin/krewtemplate" -template .krew.yaml -tag "$tag" -dist dist -base "$base" >"$work/bot.yaml"
validate bot "$work/bot.yaml"
# Both manifests must offer the same archives with the same checksums.
platforms() { sed -n 's/^ *sha256: //p' "$1" | sort; }
[ "$(platforms "$work/bot.yaml")" = "$(platforms "$manifest")" ] ||
	fail ".krew.yaml and goreleaser's manifest list different archives"

phase "kubectl trace-svc <TAB> through kubectl's plugin completion"
if command -v kubectl >/dev/null && [ "$(command -v kubectl)" != "$work/shim/kubectl" ]; then
	mkdir -p "$work/plugin"
	tar -xzf "dist/kubectl-trace_svc_${tag}_linux_amd64.tar.gz" -C "$work/plugin"
	cat >"$work/kubeconfig" <<'EOF'
apiVersion: v1
kind: Config
clusters:
- name: c1
  cluster: {server: "https://127.0.0.1:1"}
contexts:
- name: prod-eu
  context: {cluster: c1, user: u1}
- name: staging
  context: {cluster: c1, user: u1}
current-context: staging
users:
- name: u1
  user: {token: x}
EOF
	comp() { PATH="$work/plugin:$PATH" KUBECONFIG="$work/kubeconfig" kubectl __complete trace-svc "$@" 2>/dev/null; }
	got=$(comp "")
	grep -qx 'simulate	.*' <<<"$got" || fail "kubectl trace-svc <TAB> does not offer simulate: $got"
	got=$(comp --context "")
	grep -qx 'prod-eu' <<<"$got" || fail "kubectl trace-svc --context <TAB> does not offer prod-eu: $got"
	echo "kubectl $(kubectl version --client 2>/dev/null | head -n 1): completes subcommands and contexts through kubectl_complete-trace_svc"
else
	echo "kubectl not installed: skipped"
fi

phase "done"
echo "release-check passed in $((SECONDS - t0))s; artifacts in dist/"
