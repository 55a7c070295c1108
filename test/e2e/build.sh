#!/usr/bin/env bash
# Builds the real cluster components the end-to-end suite runs: etcd,
# kube-apiserver, kube-proxy and kubelet, from the Go module proxy, into
#   ${XDG_CACHE_HOME:-$HOME/.cache}/kubectl-trace-svc/e2e/bin/<k8s version>/
# Skips whatever is already there. Cold: ~11 minutes on 2 cores, ~130 MiB
# of module downloads, ~3 GB peak RSS. The scratch modules live next to the
# binaries, never in the plugin's go.mod. The container runtime (containerd,
# runc, the CNI plugins) and the tools the debug image is made of come from
# Debian packages.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/kubectl-trace-svc/e2e
BIN=$CACHE/bin/$K8S_VERSION
# Same flags as the rest of the project (Makefile): no cgo, no -trimpath, so
# the build cache is shared.
export CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$BIN"

log() { printf 'build.sh: %s\n' "$*" >&2; }

# The tools the suite runs, from Debian packages when missing (root only):
# the nodes' container runtime (containerd with its ctr, runc, the CNI
# plugins), the netfilter tools kube-proxy and the debug image use, and
# dash, coreutils and ipset for that image.
need=()
for pkg in iptables nftables conntrack curl openssl iproute2 nfacct containerd runc containernetworking-plugins ipset dash coreutils; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [[ ${#need[@]} -gt 0 ]]; then
	if [[ $(id -u) -ne 0 ]]; then
		log "missing packages ${need[*]}: run as root or install them"
	else
		log "installing ${need[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	fi
fi

build_etcd() {
	if [[ -x $BIN/etcd ]]; then log "etcd present"; return; fi
	local dir=$CACHE/scratch/etcd-$ETCD_VERSION
	mkdir -p "$dir"
	cat >"$dir/go.mod" <<MOD
module e2e.local/etcd

go 1.26

require (
	go.etcd.io/etcd/api/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/pkg/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/v3 $ETCD_VERSION
	go.etcd.io/etcd/pkg/v3 $ETCD_VERSION
	go.etcd.io/etcd/server/v3 $ETCD_VERSION
)
MOD
	log "building etcd $ETCD_VERSION"
	(cd "$dir" &&
		go get go.etcd.io/etcd/server/v3@"$ETCD_VERSION" &&
		go build -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3 &&
		mv "$BIN/etcd.tmp" "$BIN/etcd")
}

build_k8s() {
	local missing=()
	for b in kube-apiserver kube-proxy kubelet; do
		[[ -x $BIN/$b ]] || missing+=("$b")
	done
	if [[ ${#missing[@]} -eq 0 ]]; then log "kube-apiserver, kube-proxy, kubelet present"; return; fi
	local dir=$CACHE/scratch/kubernetes-$K8S_VERSION
	local staging=v0.${K8S_VERSION#v1.}
	mkdir -p "$dir"
	# Every staging module that version's own go.mod replaces, pinned to the
	# matching v0.X.Y; sample-controller and sample-cli-plugin are not on the
	# proxy and not needed.
	local kgomod
	kgomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
	local mods
	mods=$(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$kgomod" | grep -v -e sample-controller -e sample-cli-plugin | sort -u)
	[[ -n $mods ]] || { log "no staging modules found in $kgomod"; exit 1; }
	{
		printf 'module e2e.local/kubernetes\n\ngo 1.26\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
		for m in $mods; do printf '\t%s => %s %s\n' "$m" "$m" "$staging"; done
		printf ')\n'
	} >"$dir/go.mod"
	log "building ${missing[*]} $K8S_VERSION ($(wc -w <<<"$mods") staging modules replaced)"
	local ld="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
	ld+=" -X k8s.io/component-base/version.gitMajor=1"
	ld+=" -X k8s.io/component-base/version.gitMinor=$(cut -d. -f2 <<<"$K8S_VERSION")"
	ld+=" -X k8s.io/component-base/version.gitTreeState=clean"
	local pkgs=()
	for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b@$K8S_VERSION"); done
	(cd "$dir" && go get "${pkgs[@]}")
	# One binary at a time: each link of these takes ~1 GB, and the
	# packages they share are compiled once (the build cache).
	for b in "${missing[@]}"; do
		(cd "$dir" &&
			go build -ldflags "$ld" -o "$BIN/$b.tmp" "k8s.io/kubernetes/cmd/$b" &&
			mv "$BIN/$b.tmp" "$BIN/$b")
	done
}

build_etcd
build_k8s
log "ok: $BIN"
