package data

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// IgnoreTarget is the target a sampler writes where the loss must not look:
// prompt and padding positions of instruction (SFT) data. It is torch's
// ignore_index and model.IgnoreTarget.
const IgnoreTarget = -100

// DefaultSFTFields are the prompt/response keys tried, in order, when
// PrepareOptions.SFTFields is empty: this package's own, then RWKV-PEFT's
// default (--sft_field query response).
var DefaultSFTFields = [][2]string{{"prompt", "response"}, {"query", "response"}}

// SFTSegment is a piece of a rendered instruction sample: Learn is true for
// the assistant's text, whose tokens the loss is taken on.
type SFTSegment struct {
	Text  string
	Learn bool
}

// ParseSFTLine renders one JSON line of instruction data with the RWKV World
// chat template (the "recommended fine-tuning format" of BlinkDL's
// rwkv-7-world model card):
//
//	System: s\n\nUser: q\n\nAssistant: a\n\nUser: q2\n\nAssistant: a2\n\n
//
// The line is either {"messages": [{"role": "system"|"user"|"assistant",
// "content": "..."}, ...]} or an object with a prompt and a response string,
// under fields (a key pair such as {"query", "response"}; nil tries
// DefaultSFTFields in order). Each content is trimmed, "\r\n" becomes "\n" and
// runs of blank lines become one "\n", so that "\n\n" only ends a turn, as the
// model card asks.
//
// Segments alternate: everything up to and including "Assistant:" is a prompt
// segment, " answer\n\n" a learned one. They are tokenized separately, so the
// prompt ends with the same tokens as at inference (a prompt ends with
// "Assistant:", no space) and the mask falls on token boundaries. Every
// sample must end with an assistant turn, which must not be empty.
func ParseSFTLine(line []byte, fields *[2]string) ([]SFTSegment, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil {
		return nil, err
	}
	if obj == nil {
		return nil, errors.New("null, not an object")
	}
	if raw, ok := obj["messages"]; ok && fields == nil {
		return parseMessages(raw)
	}
	pairs := DefaultSFTFields
	if fields != nil {
		pairs = [][2]string{*fields}
	}
	for _, f := range pairs {
		if _, ok := obj[f[0]]; !ok {
			continue
		}
		prompt, err := stringField(obj, f[0])
		if err != nil {
			return nil, err
		}
		response, err := stringField(obj, f[1])
		if err != nil {
			return nil, err
		}
		return renderChat([]chatMessage{{"user", prompt}, {"assistant", response}})
	}
	keys := slices.Sorted(maps.Keys(obj))
	if len(keys) > 5 {
		keys = append(keys[:5], "...")
	}
	var want []string
	for _, f := range pairs {
		want = append(want, fmt.Sprintf("%q and %q", f[0], f[1]))
	}
	if fields == nil {
		want = append(want, `"messages"`)
	}
	return nil, fmt.Errorf("no %s keys (keys are case-sensitive; this object has %q)", strings.Join(want, " or "), keys)
}

type chatMessage struct{ role, content string }

func stringField(obj map[string]json.RawMessage, key string) (string, error) {
	raw, ok := obj[key]
	if !ok {
		return "", fmt.Errorf("no %q key", key)
	}
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", fmt.Errorf("%q is %.20s, not a string", key, raw)
	}
	return s, nil
}

func parseMessages(raw json.RawMessage) ([]SFTSegment, error) {
	var msgs []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &msgs); err != nil || msgs == nil {
		return nil, fmt.Errorf(`"messages" is %.20s, not a list of {"role", "content"} objects`, raw)
	}
	chat := make([]chatMessage, len(msgs))
	for i, m := range msgs {
		role, err := stringField(m, "role")
		if err != nil {
			return nil, fmt.Errorf("message %d: %w", i+1, err)
		}
		content, err := stringField(m, "content")
		if err != nil {
			return nil, fmt.Errorf("message %d: %w", i+1, err)
		}
		chat[i] = chatMessage{role, content}
	}
	return renderChat(chat)
}

var blankLines = regexp.MustCompile(`\n\s*\n`)

// normalizeTurn trims a turn's text and folds blank lines, so that "\n\n"
// only ends a turn.
func normalizeTurn(s string) string {
	s = strings.ReplaceAll(strings.TrimSpace(s), "\r\n", "\n")
	return blankLines.ReplaceAllString(s, "\n")
}

var roleNames = map[string]string{"system": "System", "user": "User", "assistant": "Assistant"}

func renderChat(msgs []chatMessage) ([]SFTSegment, error) {
	if len(msgs) == 0 {
		return nil, errors.New("no messages")
	}
	var segs []SFTSegment
	var prompt strings.Builder
	for i, m := range msgs {
		name, ok := roleNames[m.role]
		if !ok {
			return nil, fmt.Errorf("message %d: role %q, want system, user or assistant", i+1, m.role)
		}
		text := normalizeTurn(m.content)
		if text == "" {
			if m.role == "assistant" {
				return nil, fmt.Errorf("message %d: empty response", i+1)
			}
			return nil, fmt.Errorf("message %d: empty %s content", i+1, m.role)
		}
		if m.role != "assistant" {
			prompt.WriteString(name + ": " + text + "\n\n")
			continue
		}
		prompt.WriteString("Assistant:")
		segs = append(segs, SFTSegment{prompt.String(), false}, SFTSegment{" " + text + "\n\n", true})
		prompt.Reset()
	}
	if msgs[len(msgs)-1].role != "assistant" {
		return nil, fmt.Errorf("the last message is from %q: a sample must end with an assistant message", msgs[len(msgs)-1].role)
	}
	return segs, nil
}

// ParseSFTFields parses a "prompt,response" key pair, as --sft-fields takes it.
func ParseSFTFields(s string) (*[2]string, error) {
	if s == "" {
		return nil, nil
	}
	p := strings.Split(s, ",")
	if len(p) != 2 || strings.TrimSpace(p[0]) == "" || strings.TrimSpace(p[1]) == "" || p[0] == p[1] {
		return nil, fmt.Errorf("%w: SFT fields %q: want two different keys, PROMPT,RESPONSE (e.g. query,response)", ErrBadConfig, s)
	}
	return &[2]string{strings.TrimSpace(p[0]), strings.TrimSpace(p[1])}, nil
}
