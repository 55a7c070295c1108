#!/usr/bin/env bash
# Builds the kernel and base initramfs of the VM the IPVS end-to-end test
# (TestIPVS) boots: this machine's kernel has no IPVS, Debian's has it as
# modules, and qemu runs that kernel without KVM.
#
# Everything comes from Debian packages fetched with `apt-get download`
# (nothing is installed on the host from them) and unpacked with dpkg-deb:
#
#   linux-image-<abi>-amd64  vmlinuz and the modules: IPVS and its schedulers,
#                            conntrack, iptables (legacy), every xt_* match
#                            and target, ipset, dummy, veth, bridge, virtio
#   busybox-static           init, sh and the small tools
#   ipvsadm ipset iptables conntrack iproute2 nfacct, with their libraries
#   (libc6 libpopt0 libnl-3-200 libnl-genl-3-200 libipset13 libmnl0
#   libxtables12 libip4tc2 libip6tc2 libnetfilter-conntrack3 libnfnetlink0
#   libbpf1 libelf1 libbsd0 libmd0 libcap2 zlib1g libnetfilter-acct1)
#   netbase                  /etc/protocols (ipset cannot parse "tcp" without it)
#
# The result is cached under
#   ${XDG_CACHE_HOME:-$HOME/.cache}/kubectl-trace-svc/e2e/ipvsvm/<key>/
# (vmlinuz, base.cpio.gz, manifest.txt), the key being a hash of every
# package's version and of the files in this directory; the directory is
# printed on stdout. The test adds a second archive per run (kube-proxy, the
# agent, the echo server, certificates), so nothing here depends on the
# checkout's Go code.
#
# Needs: apt-get, dpkg-deb, depmod (kmod), cpio, gzip; root for mknod and,
# when they are missing, to apt-get install the host tools the test runs
# (qemu-system-x86, socat, cpio, kmod). KERNEL_PKG picks another kernel
# package (default: what linux-image-amd64 depends on now).
set -euo pipefail
cd "$(dirname "$0")"
HERE=$PWD
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/kubectl-trace-svc/e2e/ipvsvm

log() { printf 'ipvsvm/build.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# The host tools: qemu to boot, socat for the guest's forward to the
# apiserver, cpio and depmod to build.
need=()
for pkg in qemu-system-x86 socat cpio kmod; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [[ ${#need[@]} -gt 0 ]]; then
	[[ $(id -u) -eq 0 ]] || die "missing packages ${need[*]}: run as root or install them"
	log "installing ${need[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
		{ DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi

if [[ -z ${KERNEL_PKG:-} ]]; then
	KERNEL_PKG=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -1)
	[[ -n $KERNEL_PKG ]] || die "apt-cache knows no linux-image-amd64: run apt-get update"
fi
PKGS=(
	"$KERNEL_PKG" busybox-static netbase libc6
	ipvsadm libpopt0 libnl-3-200 libnl-genl-3-200
	ipset libipset13 libmnl0
	iptables libxtables12 libip4tc2 libip6tc2
	conntrack libnetfilter-conntrack3 libnfnetlink0
	iproute2 libbpf1 libelf1 libbsd0 libmd0 libcap2 zlib1g
	nfacct libnetfilter-acct1
)

# Candidate versions: together with this directory's files they are the
# cache key.
declare -A candidate
while read -r p v; do
	candidate[$p]=$v
done < <(apt-cache show --no-all-versions "${PKGS[@]}" 2>/dev/null | awk '/^Package: /{p=$2} /^Version: /{print p, $2}')
versions=()
for p in "${PKGS[@]}"; do
	[[ -n ${candidate[$p]:-} ]] || die "apt-cache has no package $p: run apt-get update"
	versions+=("$p=${candidate[$p]}")
done
key=$( {
	printf '%s\n' "${versions[@]}"
	cat build.sh rc.vm inittab modules.txt
} | sha256sum | cut -c1-16)
OUT=$CACHE/$key
if [[ -f $OUT/manifest.txt ]]; then
	log "present: $OUT"
	echo "$OUT"
	exit 0
fi

begin=$(date +%s)
DEBS=$CACHE/debs
mkdir -p "$DEBS"
todo=()
for pv in "${versions[@]}"; do
	p=${pv%%=*} v=${pv#*=}
	compgen -G "$DEBS/${p}_${v//:/%3a}_*.deb" >/dev/null || todo+=("$pv")
done
if [[ ${#todo[@]} -gt 0 ]]; then
	log "apt-get download ${#todo[@]} packages"
	# apt warns that it downloads unsandboxed as root; that is expected.
	(cd "$DEBS" && apt-get download -q "${todo[@]}" 2>&1 | grep -v -e '^W: Download is performed unsandboxed' -e '^Get:' -e '^Fetched' >&2) || true
	for pv in "${todo[@]}"; do
		p=${pv%%=*} v=${pv#*=}
		compgen -G "$DEBS/${p}_${v//:/%3a}_*.deb" >/dev/null && continue
		# Stale package lists name versions the mirror no longer has:
		# update them once and start over with the new versions.
		if [[ -z ${IPVSVM_UPDATED:-} && $(id -u) -eq 0 ]]; then
			log "could not download $pv: apt-get update, then again"
			DEBIAN_FRONTEND=noninteractive apt-get update -qq
			IPVSVM_UPDATED=1 exec "$HERE/build.sh"
		fi
		die "could not download $pv"
	done
fi

WORK=$(mktemp -d "$CACHE/tmp.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
PKG=$WORK/pkg   # every package unpacked over each other
ROOT=$WORK/root # the initramfs
mkdir -p "$PKG" "$ROOT"
for pv in "${versions[@]}"; do
	p=${pv%%=*} v=${pv#*=}
	deb=$(compgen -G "$DEBS/${p}_${v//:/%3a}_*.deb" | head -1)
	dpkg-deb -x "$deb" "$PKG"
done
KVER=$(ls "$PKG/lib/modules" | head -1)
[[ -n $KVER && -f $PKG/boot/vmlinuz-$KVER ]] || die "$KERNEL_PKG has no vmlinuz"

# Layout and busybox: every applet as a symlink, the real tools below
# replace the applets of the same name wherever busybox put them.
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,lib/x86_64-linux-gnu,usr/lib/x86_64-linux-gnu,lib64,etc,proc,sys,dev,run,tmp,var/log,root}
cp "$PKG/bin/busybox" "$ROOT/bin/busybox"
for applet in $("$ROOT/bin/busybox" --list-full); do
	[[ $applet == bin/busybox ]] || ln -sf /bin/busybox "$ROOT/$applet"
done
real_tool() { # path in the packages, then the names it answers to
	local src=$1
	shift
	for name in "$@"; do
		find "$ROOT" -name "$name" -type l -lname /bin/busybox -delete
	done
	mkdir -p "$ROOT/$(dirname "$src")"
	cp -L "$PKG/$src" "$ROOT/$src"
}
real_tool bin/ip ip
real_tool sbin/ipvsadm ipvsadm
real_tool usr/sbin/ipset ipset
real_tool usr/sbin/conntrack conntrack
real_tool usr/sbin/nfacct nfacct
real_tool usr/sbin/xtables-legacy-multi xtables-legacy-multi
# kube-proxy runs iptables, iptables-save, iptables-restore (and ip6tables):
# all legacy here.
for fam in iptables ip6tables; do
	for s in "" -save -restore; do
		ln -sf xtables-legacy-multi "$ROOT/usr/sbin/$fam$s"
		ln -sf xtables-legacy-multi "$ROOT/usr/sbin/$fam-legacy$s"
	done
done
cp -a "$PKG/usr/lib/x86_64-linux-gnu/xtables" "$ROOT/usr/lib/x86_64-linux-gnu/"

# Libraries: what the packages' own dynamic loader resolves for every
# binary and iptables extension, all of it from the unpacked packages.
LD=$PKG/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
LIBPATH=$PKG/lib/x86_64-linux-gnu:$PKG/usr/lib/x86_64-linux-gnu
cp -L "$LD" "$ROOT/lib/x86_64-linux-gnu/"
ln -sf /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$ROOT/lib64/ld-linux-x86-64.so.2"
missing=""
while read -r elf; do
	while read -r soname path; do
		case $path in
		"$PKG"/*) cp -L -n "$path" "$ROOT/lib/x86_64-linux-gnu/$soname" ;;
		*) missing+=" $soname(for ${elf#"$ROOT"/})" ;;
		esac
	done < <("$LD" --library-path "$LIBPATH" --list "$elf" | awk '$1 ~ /\// {next} $2 == "=>" && $3 ~ /^\// {print $1, $3} $2 == "=>" && $3 == "not" {print $1, "notfound"}')
done < <(find "$ROOT" -type f \( -perm -u+x -o -name '*.so' \) ! -name busybox ! -name 'ld-linux*' ! -path "$ROOT/lib/x86_64-linux-gnu/*")
[[ -z $missing ]] || die "libraries not in the package list:$missing"

# Kernel modules: the ones modules.txt names (shell globs over module
# names) and everything they depend on, by the depmod of the whole package.
depmod -b "$PKG" "$KVER"
MODS=$PKG/lib/modules/$KVER
declare -A want
while read -r pattern; do
	pattern=${pattern%%#*}
	pattern=${pattern//[[:space:]]/}
	[[ -n $pattern ]] || continue
	found=false
	glob=${pattern//_/[-_]} # module files use - and _ alike (virtio-rng.ko is virtio_rng)
	while read -r ko; do
		want[$ko]=1
		found=true
	done < <(cd "$MODS" && find kernel -name "$glob.ko" -o -name "$glob.ko.xz" -o -name "$glob.ko.zst")
	$found || die "no kernel module matches $pattern in $KERNEL_PKG"
done <modules.txt
declare -A closure
add_mod() {
	local ko=$1 dep
	[[ -n ${closure[$ko]:-} ]] && return
	closure[$ko]=1
	for dep in $(sed -n "s#^$ko: *##p" "$MODS/modules.dep"); do add_mod "$dep"; done
}
for ko in "${!want[@]}"; do add_mod "$ko"; done
for ko in "${!closure[@]}"; do
	mkdir -p "$ROOT/lib/modules/$KVER/$(dirname "$ko")"
	cp "$MODS/$ko" "$ROOT/lib/modules/$KVER/$ko"
done
cp "$MODS"/modules.{order,builtin,builtin.modinfo} "$ROOT/lib/modules/$KVER/"
depmod -b "$ROOT" "$KVER"

# /etc and the boot files. busybox init runs as /init (it goes by its
# name), reads /etc/inittab, which runs /etc/rc.vm and then the agent the
# test's per-run archive adds.
cp "$PKG"/etc/{protocols,services,ethertypes} "$ROOT/etc/"
cp -a "$PKG/etc/iproute2" "$ROOT/etc/"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\n' >"$ROOT/etc/group"
printf '127.0.0.1 localhost\n::1 localhost\n' >"$ROOT/etc/hosts"
install -m 0755 rc.vm "$ROOT/etc/rc.vm"
install -m 0644 inittab "$ROOT/etc/inittab"
ln -sf /bin/busybox "$ROOT/init"
mknod -m 0600 "$ROOT/dev/console" c 5 1
mknod -m 0666 "$ROOT/dev/null" c 1 3

mkdir -p "$WORK/out"
cp "$PKG/boot/vmlinuz-$KVER" "$WORK/out/vmlinuz"
(cd "$ROOT" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -6 >"$WORK/out/base.cpio.gz"
{
	echo "# ipvsvm/build.sh $(date -u +%Y-%m-%dT%H:%M:%SZ), key $key"
	echo "kernel $KVER"
	printf 'package %s\n' "${versions[@]}"
	echo "modules ${#closure[@]}"
	for ko in "${!closure[@]}"; do echo "module $(basename "$ko")"; done | sort
} >"$WORK/out/manifest.txt"
rm -rf "$OUT"
mv "$WORK/out" "$OUT"
# Images of other keys are stale (other package versions or boot files),
# and so are the packages of other versions.
for old in "$CACHE"/*/manifest.txt; do
	[[ $(dirname "$old") == "$OUT" ]] || rm -rf "$(dirname "$old")"
done
declare -A keep
for pv in "${versions[@]}"; do
	p=${pv%%=*} v=${pv#*=}
	for deb in "$DEBS/${p}_${v//:/%3a}_"*.deb; do keep[$deb]=1; done
done
for deb in "$DEBS"/*.deb; do
	[[ -n ${keep[$deb]:-} ]] || rm -f "$deb"
done
log "built $OUT in $(($(date +%s) - begin)) s: kernel $KVER, ${#closure[@]} modules, initramfs $(du -h "$OUT/base.cpio.gz" | cut -f1)"
echo "$OUT"
