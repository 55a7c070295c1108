// Command krewtemplate renders the krew-release-bot template (.krew.yaml)
// against local release archives, for "make release-check": {{ .TagName }} is
// -tag, and addURIAndSha works as the bot's does (the URL is itself a template
// over TagName and Version; the result is "uri: ...\n    sha256: ...") except
// that the sha256 comes from the archive of the same name in -dist, and the
// uri points at -base (a local server over -dist) when -base is set.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"text/template"
)

func main() {
	tmplFile := flag.String("template", ".krew.yaml", "krew-release-bot template")
	tag := flag.String("tag", "", "release tag, e.g. v1.2.3")
	dist := flag.String("dist", "dist", "directory with the release archives")
	base := flag.String("base", "", "URL the archives are served from (default: keep the template's URLs)")
	flag.Parse()
	if err := render(os.Stdout, *tmplFile, *tag, *dist, *base); err != nil {
		fmt.Fprintf(os.Stderr, "krewtemplate: %v\n", err)
		os.Exit(1)
	}
}

type values struct{ TagName, Version string }

func render(w io.Writer, tmplFile, tag, dist, base string) error {
	if tag == "" {
		return fmt.Errorf("-tag is required")
	}
	v := values{TagName: tag, Version: regexp.MustCompile(`\d+(\.\d+)+`).FindString(tag)}
	if v.Version == "" {
		v.Version = tag
	}
	var failed error
	funcs := template.FuncMap{
		"addURIAndSha": func(url, tag string) string {
			u, err := expand(url, values{TagName: tag, Version: v.Version})
			if err != nil {
				failed = err
				return ""
			}
			name := path.Base(u)
			sum, err := fileSHA256(filepath.Join(dist, name))
			if err != nil {
				failed = fmt.Errorf("addURIAndSha %q: %w", u, err)
				return ""
			}
			if base != "" {
				u = base + "/" + name
			}
			return fmt.Sprintf("uri: %s\n    sha256: %s", u, sum)
		},
	}
	t, err := template.New(filepath.Base(tmplFile)).Funcs(funcs).ParseFiles(tmplFile)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, v); err != nil {
		return err
	}
	if failed != nil {
		return failed
	}
	_, err = w.Write(buf.Bytes())
	return err
}

func expand(s string, v values) (string, error) {
	t, err := template.New("url").Parse(s)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	err = t.Execute(&b, v)
	return b.String(), err
}

func fileSHA256(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
