package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/rwkv-go/rwkv-go/train"
)

// Sentinels wrapped by the errors of loadConfig that concern one key; Validate's errors wrap
// train.ErrConfig and its kin instead. Every error of loadConfig is a bad-config error (exit 2).
var (
	errUnknownKey = errors.New("unknown key")
	errBadValue   = errors.New("bad value")
	errBadFlag    = errors.New("malformed override")
)

// keyError is a problem with one key. Source is where its value came from: "config a.yaml",
// "environment RWKV_TRAIN_MICRO_BSZ" or "flag --train.micro_bsz"; Kind is a sentinel above.
type keyError struct {
	Source, Key string
	Kind        error
	Msg         string
}

func (e *keyError) Error() string {
	if e.Kind == errUnknownKey {
		return fmt.Sprintf("%s: %s", e.Source, e.Msg)
	}
	switch {
	case strings.HasPrefix(e.Source, "flag "): // the flag names the key
		return fmt.Sprintf("%s: %s", e.Source, e.Msg)
	case strings.HasPrefix(e.Source, "environment "):
		return fmt.Sprintf("%s (%s): %s", e.Source, e.Key, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.Source, e.Key, e.Msg)
}

func (e *keyError) Unwrap() error { return e.Kind }

// runtimeEnv are RWKV_* variables read elsewhere (internal/blas), not config keys.
var runtimeEnv = map[string]bool{"RWKV_BLAS": true, "RWKV_BLAS_THREADS": true}

// loadConfig resolves a training config: defaults (train.DefaultConfig), then the YAML file (if
// path != ""), then RWKV_* environment variables from environ, then --key.path=value overrides;
// then strict decoding and Validate.
func loadConfig(path string, overrides []string, environ []string) (train.Config, error) {
	var src []byte
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return train.Config{}, fmt.Errorf("config: %w", err)
		}
		src = b
	}
	return resolveConfig(path, src, overrides, environ)
}

// resolveConfig is loadConfig with the file already read; name is its path, "" for none.
func resolveConfig(name string, src []byte, overrides, environ []string) (train.Config, error) {
	where := "config " + name
	if name == "" {
		where = "config (no file)"
	}
	var errs []error
	fileVals, err := readYAML(src)
	if err != nil {
		return train.Config{}, fmt.Errorf("%s: %w", where, err)
	}
	fileFlat := flattenFile(fileVals, where, &errs)
	envFlat := envValues(environ, &errs)
	flagVals, err := parseOverrides(overrides)
	if err != nil {
		return train.Config{}, err
	}
	for _, o := range flagVals {
		checkValue("flag --"+o.key, o.key, o.value, true, &errs)
	}
	if len(errs) > 0 {
		return train.Config{}, errors.Join(errs...)
	}
	cfg, err := decodeLayers(name, fileFlat, envFlat, flagVals)
	if err != nil {
		return train.Config{}, fmt.Errorf("%s: %w", where, err) // should not happen: every layer was checked
	}
	if err := cfg.Validate(); err != nil {
		// the config comes back with the error: one refused only for memory (train.ErrMemory)
		// is otherwise valid
		return cfg, fmt.Errorf("%s: %w", where, err)
	}
	return cfg, nil
}

// decodeLayers stacks the checked values in viper and decodes them over the defaults. Lowest
// first: the defaults are the struct decoded into; the file and then the environment form
// viper's config layer; the flags bind above them. (readYAML parsed the file, strictly and so
// that errors name their source; viper's AutomaticEnv would read os.Getenv, not environ.)
func decodeLayers(name string, fileFlat, envFlat map[string]any, flagVals []override) (train.Config, error) {
	v := viper.New()
	if name != "" {
		v.SetConfigFile(name)
	}
	if err := v.MergeConfigMap(nest(fileFlat)); err != nil {
		return train.Config{}, err
	}
	if err := v.MergeConfigMap(nest(envFlat)); err != nil {
		return train.Config{}, err
	}
	fs := pflag.NewFlagSet("overrides", pflag.ContinueOnError)
	for _, o := range flagVals {
		if fs.Lookup(o.key) == nil {
			fs.String(o.key, "", "")
		}
		if err := fs.Set(o.key, o.value); err != nil { // a string flag takes any value
			return train.Config{}, fmt.Errorf("flag --%s: %w", o.key, err)
		}
	}
	if err := v.BindPFlags(fs); err != nil {
		return train.Config{}, err
	}
	cfg := train.DefaultConfig()
	strict := func(dc *mapstructure.DecoderConfig) { dc.WeaklyTypedInput = false }
	if err := v.UnmarshalExact(&cfg, viper.DecodeHook(strictHook()), strict); err != nil {
		return train.Config{}, err
	}
	return cfg, nil
}

// readYAML parses one YAML document whose top level is a mapping (or empty).
func readYAML(src []byte) (map[string]any, error) {
	var m map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(src))
	if err := dec.Decode(&m); err != nil && err != io.EOF {
		return nil, err
	}
	var extra any
	if err := dec.Decode(&extra); err != io.EOF {
		if err != nil {
			return nil, err
		}
		return nil, errors.New("more than one YAML document")
	}
	return m, nil
}

// flattenFile checks the file's keys and values and returns them by dotted key. A section
// with no keys (all commented out) reads as null and is allowed.
func flattenFile(m map[string]any, where string, errs *[]error) map[string]any {
	fields, sections := configSchema()
	flat := map[string]any{}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		val := m[k]
		if !sections[k] {
			if _, ok := fields[k]; !ok {
				*errs = append(*errs, unknownKey(where, k))
				continue
			}
			if checkValue(where, k, val, false, errs) {
				flat[k] = val
			}
			continue
		}
		var sec map[string]any
		switch s := val.(type) {
		case nil:
			continue
		case map[string]any:
			sec = s
		case map[any]any: // some key is not a string
			sec = map[string]any{}
			for sk, sv := range s {
				sec[fmt.Sprint(sk)] = sv
			}
		default:
			*errs = append(*errs, &keyError{where, k, errBadValue, "want a section (a mapping of keys), got " + describe(val)})
			continue
		}
		for _, sk := range slices.Sorted(maps.Keys(sec)) {
			key := k + "." + sk
			if _, ok := fields[key]; !ok {
				*errs = append(*errs, unknownKey(where, key))
				continue
			}
			if checkValue(where, key, sec[sk], false, errs) {
				flat[key] = sec[sk]
			}
		}
	}
	return flat
}

// envValues maps RWKV_SECTION_KEY=value to section.key (RWKV_OUT_DIR to out_dir). A name that
// starts with RWKV_ and a section, or names a top-level key, must be a known key; other RWKV_
// variables (RWKV_BLAS, RWKV-LM's RWKV_JIT_ON, ...) are not config and are ignored.
func envValues(environ []string, errs *[]error) map[string]any {
	fields, sections := configSchema()
	flat := map[string]any{}
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		rest, isRWKV := strings.CutPrefix(name, "RWKV_")
		if !ok || !isRWKV || runtimeEnv[name] {
			continue
		}
		key := strings.ToLower(rest)
		if _, ok := fields[key]; !ok {
			sec, sub, _ := strings.Cut(key, "_")
			if !sections[sec] {
				continue
			}
			key = sec
			if sub != "" {
				key += "." + sub
			}
		}
		if checkValue("environment "+name, key, val, true, errs) {
			flat[key] = val // the last of repeated names wins
		}
	}
	return flat
}

type override struct{ key, value string }

// parseOverrides reads --key.path=value and --key.path value arguments. The keys are checked
// by the caller.
func parseOverrides(args []string) ([]override, error) {
	var out []override
	for i := 0; i < len(args); i++ {
		arg := args[i]
		name, ok := strings.CutPrefix(arg, "--")
		if !ok || name == "" || strings.HasPrefix(name, "-") || strings.HasPrefix(name, "=") {
			return nil, fmt.Errorf("flag %q: %w: want --key.path=value or --key.path value", arg, errBadFlag)
		}
		key, val, hasVal := strings.Cut(name, "=")
		if !hasVal {
			if i+1 == len(args) || strings.HasPrefix(args[i+1], "--") {
				return nil, fmt.Errorf("flag %q: %w: missing value", arg, errBadFlag)
			}
			i++
			val = args[i]
		}
		out = append(out, override{key, val})
	}
	return out, nil
}

// checkValue reports whether val suits key, appending an error naming source and key if not.
// text marks strings from the environment or the command line, which are parsed strictly.
func checkValue(source, key string, val any, text bool, errs *[]error) bool {
	fields, sections := configSchema()
	t, ok := fields[key]
	if !ok {
		if sections[key] {
			*errs = append(*errs, &keyError{source, key, errUnknownKey, fmt.Sprintf("%q is a section, not a key", key)})
		} else {
			*errs = append(*errs, unknownKey(source, key))
		}
		return false
	}
	if _, err := convert(val, t, text); err != nil {
		*errs = append(*errs, &keyError{source, key, errBadValue, err.Error()})
		return false
	}
	return true
}

func unknownKey(source, key string) error {
	fields, _ := configSchema()
	msg := fmt.Sprintf("unknown key %q", key)
	if s := nearestKey(key, fields); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return &keyError{source, key, errUnknownKey, msg}
}

// nearestKey is the known key closest in edit distance to key, or the one with the same last
// word in another section; "" when none is close.
func nearestKey(key string, fields map[string]reflect.Type) string {
	best, bestD := "", 1<<30
	last := key[strings.LastIndex(key, ".")+1:]
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		d := editDistance(key, k)
		if k[strings.LastIndex(k, ".")+1:] == last {
			d = min(d, 1)
		}
		if d < bestD {
			best, bestD = k, d
		}
	}
	if bestD > max(2, len(key)/4) {
		return ""
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// strictHook converts what the layers hold into the field types: strings (environment, flags)
// by strconv, floats to integers only when integral, nothing by weak typing.
func strictHook() mapstructure.DecodeHookFuncType {
	return func(from, to reflect.Type, data any) (any, error) {
		if !isLeaf(to) {
			return data, nil
		}
		v, err := convert(data, to, from.Kind() == reflect.String)
		if err != nil {
			return nil, err
		}
		return v.Interface(), nil
	}
}

// convert turns val into a value of type t or says why it cannot. Strings become numbers and
// booleans only when text is set.
func convert(val any, t reflect.Type, text bool) (reflect.Value, error) {
	out := reflect.New(t).Elem()
	bad := func(want string) (reflect.Value, error) {
		return out, fmt.Errorf("want %s, got %s", want, describe(val))
	}
	s, isString := val.(string)
	if isString && !text && t.Kind() != reflect.String {
		return out, fmt.Errorf("want %s, got the string %s", wantOf(t), describe(val))
	}
	switch t.Kind() {
	case reflect.String:
		if val == nil {
			return bad("a string")
		}
		if !isString {
			return bad("a string (quote it)")
		}
		out.SetString(s)
	case reflect.Bool:
		b, ok := val.(bool)
		if isString {
			var err error
			b, err = strconv.ParseBool(s)
			ok = err == nil
		}
		if !ok {
			return bad(wantOf(t))
		}
		out.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, ok, inRange := toInt(val)
		if !ok {
			return bad(wantOf(t))
		}
		if !inRange || out.OverflowInt(i) {
			return out, fmt.Errorf("%s is out of range", describe(val))
		}
		out.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if u, err := strconv.ParseUint(s, 10, 64); isString && err == nil && !out.OverflowUint(u) {
			out.SetUint(u)
			return out, nil
		}
		if u, isU := val.(uint64); isU && !out.OverflowUint(u) {
			out.SetUint(u)
			return out, nil
		}
		i, ok, inRange := toInt(val)
		if !ok {
			return bad(wantOf(t))
		}
		if i < 0 {
			return out, fmt.Errorf("want a non-negative integer, got %s", describe(val))
		}
		if !inRange || out.OverflowUint(uint64(i)) {
			return out, fmt.Errorf("%s is out of range", describe(val))
		}
		out.SetUint(uint64(i))
	case reflect.Float32, reflect.Float64:
		f, ok := toFloat(val)
		if !ok {
			return bad(wantOf(t))
		}
		if out.OverflowFloat(f) {
			return out, fmt.Errorf("%s is out of range", describe(val))
		}
		out.SetFloat(f)
	default:
		return out, fmt.Errorf("unsupported field type %s", t)
	}
	return out, nil
}

// toInt reads an integer, or an integral float (1e3); inRange is false beyond int64 (and for
// uint64 values, which only the uint case accepts).
func toInt(val any) (i int64, ok, inRange bool) {
	switch x := val.(type) {
	case int:
		return int64(x), true, true
	case int64:
		return x, true, true
	case uint64:
		if x > math.MaxInt64 {
			return 0, true, false
		}
		return int64(x), true, true
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) || x != math.Trunc(x) {
			return 0, false, false
		}
		if x < -(1<<63) || x >= 1<<63 {
			return 0, true, false
		}
		return int64(x), true, true
	case string:
		if n, err := strconv.ParseInt(x, 10, 64); err == nil {
			return n, true, true
		} else if errors.Is(err, strconv.ErrRange) {
			return 0, true, false
		}
		if f, err := strconv.ParseFloat(x, 64); err == nil {
			return toInt(f)
		}
	}
	return 0, false, false
}

func toFloat(val any) (float64, bool) {
	switch x := val.(type) {
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	case float64:
		return x, true
	case string:
		f, err := strconv.ParseFloat(x, 64)
		return f, err == nil
	}
	return 0, false
}

func wantOf(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a " + t.String()
}

func describe(val any) string {
	switch x := val.(type) {
	case nil:
		return "no value"
	case string:
		return strconv.Quote(x)
	case map[string]any, map[any]any:
		return "a mapping"
	case []any:
		return "a list"
	case bool, int, int64, uint64, float64:
		return fmt.Sprint(x)
	}
	return fmt.Sprintf("a %T", val)
}

func isLeaf(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.String, reflect.Bool, reflect.Float32, reflect.Float64,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return true
	}
	return false
}

// configField is one key of train.Config: "train.micro_bsz", its type and its place in the
// struct.
type configField struct {
	key   string
	typ   reflect.Type
	index []int
}

// configFields lists the keys of train.Config in struct order, following the mapstructure tags
// (",squash" keeps an embedded struct's keys in its parent's section).
func configFields() []configField {
	var out []configField
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
			if name == "-" {
				continue
			}
			idx := append(slices.Clone(index), i)
			if f.Type.Kind() == reflect.Struct && (f.Anonymous && name == "" || strings.Contains(opts, "squash")) {
				walk(f.Type, prefix, idx)
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, prefix+name+".", idx)
				continue
			}
			out = append(out, configField{prefix + name, f.Type, idx})
		}
	}
	walk(reflect.TypeFor[train.Config](), "", nil)
	return out
}

// configSchema is configFields by key, and the set of section names.
func configSchema() (map[string]reflect.Type, map[string]bool) {
	fields := map[string]reflect.Type{}
	sections := map[string]bool{}
	for _, f := range configFields() {
		fields[f.key] = f.typ
		if sec, _, ok := strings.Cut(f.key, "."); ok {
			sections[sec] = true
		}
	}
	return fields, sections
}

// nest turns {"train.micro_bsz": 4} into {"train": {"micro_bsz": 4}}.
func nest(flat map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range flat {
		m := out
		parts := strings.Split(k, ".")
		for _, p := range parts[:len(parts)-1] {
			sub, ok := m[p].(map[string]any)
			if !ok {
				sub = map[string]any{}
				m[p] = sub
			}
			m = sub
		}
		m[parts[len(parts)-1]] = v
	}
	return out
}

// marshalConfig renders the resolved config as YAML with the same keys (printed at start,
// stored in checkpoints), in struct order.
func marshalConfig(c train.Config) (string, error) {
	root := &yaml.Node{Kind: yaml.MappingNode}
	sections := map[string]*yaml.Node{}
	cv := reflect.ValueOf(c)
	for _, f := range configFields() {
		parent, leaf := root, f.key
		if sec, rest, ok := strings.Cut(f.key, "."); ok {
			if sections[sec] == nil {
				sections[sec] = &yaml.Node{Kind: yaml.MappingNode}
				root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: sec}, sections[sec])
			}
			parent, leaf = sections[sec], rest
		}
		val := &yaml.Node{}
		if err := val.Encode(cv.FieldByIndex(f.index).Interface()); err != nil {
			return "", fmt.Errorf("config: %s: %w", f.key, err)
		}
		parent.Content = append(parent.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: leaf}, val)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return "", fmt.Errorf("config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return "", fmt.Errorf("config: %w", err)
	}
	return buf.String(), nil
}
