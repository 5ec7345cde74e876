package activation

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// errIncompatible: the action document cannot be run (a sequence, unknown code form).
var errIncompatible = errors.New("action not executable")

// ResolveCode returns the action's code as /init expects it: source text, or standard
// base64 of the raw bytes for binary code (openwhisk-protocol.md §5.1, §6.1). Code is a
// plain string, an inline "mem:<base64url>" attachment or a store attachment
// ("couch:<name>" or a legacy relative name) read through st.
func ResolveCode(ctx context.Context, st Store, a *WhiskAction) (string, error) {
	c := bytes.TrimSpace(a.Exec.Code)
	if len(c) == 0 || string(c) == "null" {
		return "", fmt.Errorf("%w: exec has no code", errIncompatible)
	}
	if c[0] == '"' {
		var s string
		if err := json.Unmarshal(c, &s); err != nil {
			return "", fmt.Errorf("%w: code: %v", errIncompatible, err)
		}
		// A plain-string code of a binary action is already base64 text.
		return s, nil
	}
	var att Attachment
	if err := json.Unmarshal(c, &att); err != nil || att.AttachmentName == "" {
		return "", fmt.Errorf("%w: code is neither a string nor an attachment", errIncompatible)
	}
	var raw []byte
	name := att.AttachmentName
	switch {
	case strings.HasPrefix(name, "mem:"):
		enc := strings.TrimPrefix(name, "mem:")
		var err error
		// OpenWhisk writes base64url with padding; accept it without padding too.
		if raw, err = base64.URLEncoding.DecodeString(enc); err != nil {
			if raw, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(enc, "=")); err != nil {
				return "", fmt.Errorf("%w: inline code: %v", errIncompatible, err)
			}
		}
	case strings.HasPrefix(name, "couch:") || !strings.Contains(name, ":"):
		var err error
		raw, err = st.GetAttachment(ctx, a.docID(), strings.TrimPrefix(name, "couch:"))
		if err != nil {
			return "", fmt.Errorf("activation: code attachment %s of %s: %w", name, a.docID(), err)
		}
	default:
		return "", fmt.Errorf("%w: attachment store of %q not supported", errIncompatible, name)
	}
	if a.Exec.Binary {
		return base64.StdEncoding.EncodeToString(raw), nil
	}
	return string(raw), nil
}

func (a *WhiskAction) docID() string {
	if a.ID != "" {
		return a.ID
	}
	return a.Namespace + "/" + a.Name
}

// ProvideAPIKey reports the annotation provide-api-key; absent means true (§5.1).
func (a *WhiskAction) ProvideAPIKey() bool {
	for _, kv := range a.Annotations {
		if kv.Key == "provide-api-key" {
			return isTruthy(kv.Value)
		}
	}
	return true
}

// isTruthy is OpenWhisk's Parameters.isTruthy: false, null, 0, "" are false.
func isTruthy(v json.RawMessage) bool {
	switch s := string(bytes.TrimSpace(v)); s {
	case "false", "null", "0", `""`, "":
		return false
	}
	return true
}

// EnvString converts a parameter value to an environment string as the invoker does
// for /init env: strings kept, null → "", anything else its compact JSON text (§6.1).
func EnvString(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || string(v) == "null" {
		return ""
	}
	if v[0] == '"' {
		var s string
		if json.Unmarshal(v, &s) == nil {
			return s
		}
	}
	return string(compactJSON(v))
}

// PartitionArguments splits content into the init parameters (keys named in initArgs)
// and the run value (the rest), as ContainerProxy.partitionArguments does. An array or
// absent content is passed to run whole.
func PartitionArguments(content json.RawMessage, initArgs []string) (initEnv map[string]string, value json.RawMessage) {
	initEnv = map[string]string{}
	c := bytes.TrimSpace(content)
	if len(c) == 0 || string(c) == "null" {
		return initEnv, json.RawMessage("{}")
	}
	if c[0] != '{' || len(initArgs) == 0 {
		return initEnv, compactJSON(c)
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(c, &obj) != nil {
		return initEnv, compactJSON(c)
	}
	isInit := map[string]bool{}
	for _, k := range initArgs {
		isInit[k] = true
	}
	rest := map[string]json.RawMessage{}
	for k, v := range obj {
		if isInit[k] {
			initEnv[k] = EnvString(v)
		} else {
			rest[k] = v
		}
	}
	b, _ := json.Marshal(rest)
	return initEnv, b
}

// BuildMessages returns the init and run messages for one activation of action a with
// its resolved code, started at now (openwhisk-protocol.md §6.1, §6.2).
func BuildMessages(m *ActivationMessage, a *WhiskAction, code string, now time.Time) (InitMessage, RunMessage) {
	initEnv, value := PartitionArguments(m.Content, m.InitArgs)
	deadline := strconv.FormatInt(now.Add(time.Duration(a.Limits.Timeout)*time.Millisecond).UnixMilli(), 10)
	version := a.Version
	if version == "" {
		version = m.Action.Version
	}
	run := RunMessage{
		Value:         value,
		Namespace:     m.User.Namespace.Name,
		ActionName:    m.Action.QualifiedNameWithLeadingSlash(),
		ActionVersion: version,
		ActivationID:  m.ActivationID,
		TransactionID: m.TransID.ID(),
		Deadline:      deadline,
	}
	if a.ProvideAPIKey() {
		run.APIKey = m.User.AuthKey.APIKey
	}
	env := initEnv
	ctxEnv := map[string]string{
		"namespace":      run.Namespace,
		"action_name":    run.ActionName,
		"action_version": run.ActionVersion,
		"activation_id":  run.ActivationID,
		"transaction_id": run.TransactionID,
		"deadline":       run.Deadline,
	}
	if run.APIKey != "" {
		ctxEnv["api_key"] = run.APIKey
	}
	for k, v := range ctxEnv {
		env["__OW_"+strings.ToUpper(k)] = v
	}
	main := a.Exec.Main
	if main == "" {
		main = "main"
	}
	init := InitMessage{Name: a.Name, Main: main, Code: code, Binary: a.Exec.Binary, Env: env}
	return init, run
}

// CodeDigest is "sha256-<hex>" of code.
func CodeDigest(code string) string {
	h := sha256.Sum256([]byte(code))
	return "sha256-" + hex.EncodeToString(h[:])
}
