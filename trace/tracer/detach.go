package tracer

import (
	"reflect"
	"strings"
)

// detach gives every string reachable from ptr (through exported fields,
// slices, arrays, maps, pointers and interfaces) memory of its own. The
// engines hand out strings that alias their parsed dump — chain names and
// rule text live in the iptables engine's arenas — so a node's part of the
// Path that kept one would keep megabytes of the node's dump in memory
// after its dataplane is dropped, for every node of the trace.
//
// What ptr reaches is copied before it is changed (slices, maps, pointed-to
// values), never changed in place: it may be shared with other nodes'
// parts, built at the same time.
func detach(ptr any) {
	v := reflect.ValueOf(ptr)
	if v.Kind() == reflect.Pointer && !v.IsNil() {
		detachValue(v.Elem(), map[uintptr]reflect.Value{})
	}
}

// detachValue detaches v, which is settable and owned by the caller.
func detachValue(v reflect.Value, copied map[uintptr]reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		if v.Len() > 0 {
			v.SetString(strings.Clone(v.String()))
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Field(i); v.Type().Field(i).IsExported() && f.CanSet() {
				detachValue(f, copied)
			}
		}
	case reflect.Array:
		for i := range v.Len() {
			detachValue(v.Index(i), copied)
		}
	case reflect.Pointer:
		if v.IsNil() {
			return
		}
		if c, ok := copied[v.Pointer()]; ok {
			v.Set(c) // shared before, shared after (and no cycle is walked twice)
			return
		}
		c := reflect.New(v.Type().Elem())
		copied[v.Pointer()] = c
		c.Elem().Set(v.Elem())
		detachValue(c.Elem(), copied)
		v.Set(c)
	case reflect.Slice:
		if v.IsNil() {
			return
		}
		c := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		reflect.Copy(c, v)
		if v.Type().Elem().Kind() != reflect.Uint8 {
			for i := range c.Len() {
				detachValue(c.Index(i), copied)
			}
		}
		v.Set(c)
	case reflect.Map:
		if v.IsNil() {
			return
		}
		c := reflect.MakeMapWithSize(v.Type(), v.Len())
		for it := v.MapRange(); it.Next(); {
			k, e := owned(it.Key()), owned(it.Value())
			detachValue(k, copied)
			detachValue(e, copied)
			c.SetMapIndex(k, e)
		}
		v.Set(c)
	case reflect.Interface:
		if v.IsNil() {
			return
		}
		e := owned(v.Elem())
		detachValue(e, copied)
		v.Set(e)
	}
}

// owned is a settable copy of v.
func owned(v reflect.Value) reflect.Value {
	c := reflect.New(v.Type()).Elem()
	c.Set(v)
	return c
}
