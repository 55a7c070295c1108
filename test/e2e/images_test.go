package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// The images every node's containerd gets, built here (no registry is
// reachable): OCI layout archives that `ctr images import` takes. Pods use
// them with imagePullPolicy IfNotPresent, so nothing is ever pulled.
const (
	pauseImage = "e2e.local/pause:1" // containerd's sandbox_image
	echoImage  = "e2e.local/echo:1"  // cmd/echoserver
	debugImage = "e2e.local/debug:1" // sh, sleep, iptables (nft and legacy), nft, ipset, conntrack
	// noNFTImage is debugImage without nft: a node whose debug image lacks
	// a tool the plugin needs.
	noNFTImage = "e2e.local/debug-nonft:1"
	// slowImage is debugImage whose iptables-nft-save first sleeps
	// slowDumpSleep seconds: a debug pod that is still being exec'd when
	// the test interrupts the plugin.
	slowImage     = "e2e.local/debug-slow:1"
	slowDumpSleep = "29.5"
	// unpullable names an image no node has and none can pull: its debug
	// pod stays Pending (ErrImagePull, then ImagePullBackOff).
	unpullable = "e2e.local/not-there:1"
)

// kubeProxyImage is the plugin's own default image (registry.k8s.io/kube-proxy
// at the server's version, as no kube-proxy pod runs in kube-system here):
// every node has debugImage under that name too, so the default choice runs
// with IfNotPresent and no pull.
func kubeProxyImage() string { return "registry.k8s.io/kube-proxy:" + *k8sVersion }

// layerEntry is one file, directory or symlink of an image's only layer.
type layerEntry struct {
	name string // path in the image, without the leading /
	src  string // host file whose content (symlinks followed) it gets
	data []byte // or this content
	link string // or it is a symlink to this
	dir  bool   // or a directory
	mode int64
}

// ociImage is a one-layer image.
type ociImage struct {
	names      []string // full references, e.g. e2e.local/echo:1
	entrypoint []string
	entries    []layerEntry
}

// images are the suite's archives by image name (the first of its names).
type images map[string]string

// buildImages writes the suite's images into dir: pause and echo from the
// binaries just built, the debug images from this machine's Debian
// packages, cached under cacheDir (keyed on the files they copy).
func buildImages(dir, cacheDir, pauseBin, echoBin string) (images, error) {
	debug, err := debugEntries()
	if err != nil {
		return nil, err
	}
	var noNFT, slow []layerEntry
	for _, e := range debug {
		switch e.name {
		case "usr/sbin/nft":
			slow = append(slow, e)
		case "usr/sbin/iptables-nft-save":
			noNFT = append(noNFT, e)
			slow = append(slow, layerEntry{name: e.name, mode: 0o755, data: []byte(
				"#!/bin/sh\n# e2e: a dump that takes long, so the test can interrupt the exec.\nsleep " + slowDumpSleep + "\nexec /usr/sbin/xtables-nft-multi iptables-nft-save \"$@\"\n")})
		default:
			noNFT = append(noNFT, e)
			slow = append(slow, e)
		}
	}
	shell := []string{"/bin/sh"}
	all := []struct {
		img    ociImage
		cached bool
	}{
		{ociImage{names: []string{pauseImage}, entrypoint: []string{"/pause"},
			entries: append(baseEntries(), layerEntry{name: "pause", src: pauseBin, mode: 0o755})}, false},
		{ociImage{names: []string{echoImage}, entrypoint: []string{"/echoserver"},
			entries: append(baseEntries(), layerEntry{name: "echoserver", src: echoBin, mode: 0o755})}, false},
		{ociImage{names: []string{debugImage, kubeProxyImage()}, entrypoint: shell, entries: debug}, true},
		{ociImage{names: []string{noNFTImage}, entrypoint: shell, entries: noNFT}, true},
		{ociImage{names: []string{slowImage}, entrypoint: shell, entries: slow}, true},
	}
	out := images{}
	for _, a := range all {
		path := filepath.Join(dir, imageFileName(a.img.names[0])+".tar")
		if a.cached {
			key, err := a.img.key()
			if err != nil {
				return nil, err
			}
			path = filepath.Join(cacheDir, imageFileName(a.img.names[0])+"-"+key+".tar")
			if _, err := os.Stat(path); err == nil {
				out[a.img.names[0]] = path
				continue
			}
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, err
		}
		if err := a.img.write(path); err != nil {
			return nil, fmt.Errorf("image %s: %w", a.img.names[0], err)
		}
		out[a.img.names[0]] = path
	}
	return out, nil
}

func imageFileName(ref string) string {
	return strings.NewReplacer("/", "_", ":", "_").Replace(ref)
}

// baseEntries are what every image has besides its files: the
// directories a runtime mounts over.
func baseEntries() []layerEntry {
	var es []layerEntry
	for _, d := range []string{"dev", "proc", "sys", "etc", "run", "tmp", "root"} {
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		es = append(es, layerEntry{name: d, dir: true, mode: mode})
	}
	return es
}

// debugBinaries are the debug image's programs, as kube-proxy's own image
// (distroless-iptables) has them: a shell with cat, grep and wc, sleep (the
// pod's command), iptables with both backends, nft, ipset and conntrack.
// There is no head: the dump script caps what it reads without it.
var debugBinaries = []string{
	"/usr/bin/dash", "/usr/bin/sleep", "/usr/bin/cat", "/usr/bin/grep", "/usr/bin/wc",
	"/usr/sbin/xtables-nft-multi", "/usr/sbin/xtables-legacy-multi",
	"/usr/sbin/nft", "/usr/sbin/ipset", "/usr/sbin/conntrack",
}

// debugEntries collects the debug image from this machine's files: the
// binaries, the libraries ldd says they load, iptables' extensions (loaded
// at run time), the multi-call names, and the few /etc files the tools
// read.
func debugEntries() ([]layerEntry, error) {
	es := baseEntries()
	for _, l := range [][2]string{{"bin", "usr/bin"}, {"sbin", "usr/sbin"}, {"lib", "usr/lib"}, {"lib64", "usr/lib64"}, {"var/run", "../run"}} {
		es = append(es, layerEntry{name: l[0], link: l[1]})
	}
	es = append(es, layerEntry{name: "var", dir: true, mode: 0o755})
	seen := map[string]bool{}
	add := func(hostPath string) error {
		name, err := canonical(hostPath)
		if err != nil {
			return err
		}
		if !seen[name] {
			seen[name] = true
			es = append(es, layerEntry{name: strings.TrimPrefix(name, "/"), src: hostPath, mode: 0o755})
		}
		return nil
	}
	ext, _ := filepath.Glob("/usr/lib/x86_64-linux-gnu/xtables/*.so")
	if len(ext) == 0 {
		return nil, fmt.Errorf("no iptables extensions in /usr/lib/x86_64-linux-gnu/xtables (apt-get install iptables)")
	}
	objs := append(append([]string{}, debugBinaries...), ext...)
	for _, o := range objs {
		if _, err := os.Stat(o); err != nil {
			return nil, fmt.Errorf("debug image: %w (test/e2e/build.sh installs it)", err)
		}
		if err := add(o); err != nil {
			return nil, err
		}
		libs, err := lddLibs(o)
		if err != nil {
			return nil, err
		}
		for _, l := range libs {
			if err := add(l); err != nil {
				return nil, err
			}
		}
	}
	es = append(es, layerEntry{name: "usr/bin/sh", link: "dash"})
	for _, fam := range []string{"iptables", "ip6tables"} {
		for _, suffix := range []string{"", "-save", "-restore"} {
			es = append(es,
				layerEntry{name: "usr/sbin/" + fam + suffix, link: "xtables-nft-multi"},
				layerEntry{name: "usr/sbin/" + fam + "-nft" + suffix, link: "xtables-nft-multi"},
				layerEntry{name: "usr/sbin/" + fam + "-legacy" + suffix, link: "xtables-legacy-multi"})
		}
	}
	for _, f := range []string{"/etc/protocols", "/etc/services", "/etc/ethertypes"} {
		if _, err := os.Stat(f); err == nil {
			es = append(es, layerEntry{name: strings.TrimPrefix(f, "/"), src: f, mode: 0o644})
		}
	}
	es = append(es,
		layerEntry{name: "etc/nsswitch.conf", data: []byte("passwd: files\ngroup: files\nhosts: files\nprotocols: files\nservices: files\n"), mode: 0o644},
		layerEntry{name: "etc/passwd", data: []byte("root:x:0:0:root:/root:/bin/sh\n"), mode: 0o644},
		layerEntry{name: "etc/group", data: []byte("root:x:0:\n"), mode: 0o644},
	)
	return es, nil
}

// canonical is where a host file lives with its directories' symlinks
// resolved (/lib/x86_64-linux-gnu/libc.so.6 is /usr/lib/x86_64-linux-gnu/
// libc.so.6 on a merged-/usr system), keeping its own name.
func canonical(p string) (string, error) {
	dir, err := filepath.EvalSymlinks(filepath.Dir(p))
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, filepath.Base(p)), nil
}

var lddLine = regexp.MustCompile(`(?m)^\s*(?:\S+ => )?(/\S+) \(0x[0-9a-f]+\)$`)

// lddLibs lists the shared objects a binary loads, by absolute path.
func lddLibs(path string) ([]string, error) {
	out, err := exec.Command("ldd", path).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "not a dynamic executable") {
			return nil, nil
		}
		return nil, fmt.Errorf("ldd %s: %v: %s", path, err, out)
	}
	var libs []string
	for _, m := range lddLine.FindAllStringSubmatch(string(out), -1) {
		libs = append(libs, m[1])
	}
	return libs, nil
}

// builderVersion changes whenever the archive layout below does, so that
// cached images are rebuilt.
const builderVersion = "oci-1"

// key identifies the image's content without reading it: its names, its
// entries, and each host file's size and modification time.
func (img ociImage) key() (string, error) {
	h := sha256.New()
	fmt.Fprintln(h, builderVersion, img.names, img.entrypoint)
	for _, e := range img.entries {
		fmt.Fprintf(h, "%s %o %q %t %x", e.name, e.mode, e.link, e.dir, sha256.Sum256(e.data))
		if e.src != "" {
			fi, err := os.Stat(e.src)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(h, " %s %d %d", e.src, fi.Size(), fi.ModTime().UnixNano())
		}
		fmt.Fprintln(h)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// write makes the OCI layout archive: oci-layout, index.json (one manifest
// entry per name, annotated with it as containerd's import reads it) and
// the blobs: an uncompressed layer, the config, the manifest.
func (img ociImage) write(path string) error {
	layer, err := img.layer()
	if err != nil {
		return err
	}
	layerDigest := digest(layer)
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config": map[string]any{
			"Entrypoint": img.entrypoint,
			"Env":        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			"WorkingDir": "/",
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
	})
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config), "size": len(config)},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layerDigest, "size": len(layer)}},
	})
	var descs []any
	for _, n := range img.names {
		descs = append(descs, map[string]any{
			"mediaType": "application/vnd.oci.image.manifest.v1+json",
			"digest":    digest(manifest),
			"size":      len(manifest),
			"platform":  map[string]string{"architecture": "amd64", "os": "linux"},
			"annotations": map[string]string{
				"io.containerd.image.name":          n,
				"org.opencontainers.image.ref.name": n,
			},
		})
	}
	index, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": descs})

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{blobPath(layerDigest), layer},
		{blobPath(digest(config)), config},
		{blobPath(digest(manifest)), manifest},
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755}); err != nil {
			return err
		}
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o644, Size: int64(len(f.data))}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// layer is the image's filesystem as a tar, directories first, sorted, with
// fixed times so the same files give the same digest.
func (img ociImage) layer() ([]byte, error) {
	es := append([]layerEntry{}, img.entries...)
	// Parent directories of every entry, once.
	have := map[string]bool{}
	for _, e := range es {
		have[e.name] = true
	}
	for _, e := range img.entries {
		for d := filepath.Dir(e.name); d != "." && !have[d]; d = filepath.Dir(d) {
			have[d] = true
			es = append(es, layerEntry{name: d, dir: true, mode: 0o755})
		}
	}
	sort.SliceStable(es, func(i, j int) bool { return es[i].name < es[j].name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Mode: e.mode, Format: tar.FormatPAX}
		var data []byte
		switch {
		case e.dir:
			h.Typeflag, h.Name = tar.TypeDir, e.name+"/"
		case e.link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, e.link, 0o777
		case e.src != "":
			b, err := os.ReadFile(e.src)
			if err != nil {
				return nil, err
			}
			data = b
		default:
			data = e.data
		}
		if !e.dir && e.link == "" {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func blobPath(d string) string { return "blobs/sha256/" + strings.TrimPrefix(d, "sha256:") }
