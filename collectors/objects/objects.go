// Package objects reads API objects saved with kubectl, for tracing
// offline (--objects). It is apart from collectors/file, which reads node
// dumps, because it needs client-go's scheme: simulate reads dumps and
// must not link the cluster client.
package objects

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
)

// Read reads API objects saved with kubectl (`kubectl get svc,
// endpointslices,pods,nodes -o yaml`, or -o json): a List, or documents
// separated by "---". Kinds the client does not know are an error that names
// them.
func Read(path string) ([]runtime.Object, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read objects: %w", err)
	}
	var out []runtime.Object
	reader := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for doc := 1; ; doc++ {
		var raw runtime.RawExtension
		if err := reader.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("objects file %q, document %d: %w", path, doc, err)
		}
		if len(bytes.TrimSpace(raw.Raw)) == 0 {
			continue
		}
		objs, err := decodeDoc(raw.Raw)
		if err != nil {
			return nil, fmt.Errorf("objects file %q, document %d: %w", path, doc, err)
		}
		out = append(out, objs...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("objects file %q holds no objects; save them with kubectl get service,endpointslices,pods,nodes -o yaml", path)
	}
	return out, nil
}

// decodeDoc decodes one document: an object, or a List of objects.
func decodeDoc(raw []byte) ([]runtime.Object, error) {
	var head struct {
		Kind  string            `json:"kind"`
		Items []json.RawMessage `json:"items"`
	}
	j, err := utilyaml.ToJSON(raw)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(j, &head); err != nil {
		return nil, err
	}
	if head.Kind == "" {
		return nil, fmt.Errorf("a document without kind")
	}
	decode := scheme.Codecs.UniversalDeserializer().Decode
	if head.Kind == "List" || strings.HasSuffix(head.Kind, "List") && head.Items != nil {
		var out []runtime.Object
		for i, item := range head.Items {
			obj, _, err := decode(item, nil, nil)
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", i+1, err)
			}
			out = append(out, obj)
		}
		return out, nil
	}
	obj, _, err := decode(j, nil, nil)
	if err != nil {
		return nil, err
	}
	return []runtime.Object{obj}, nil
}
