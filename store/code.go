package store

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/seuss-go/seuss/activation"
)

// MaxInlineSize is OpenWhisk's whisk.db.max-inline-size (16 k in application.conf):
// code shorter than this is inlined as "mem:<base64url>", longer code becomes a
// "couch:<uuid>" attachment (AttachmentSupport.scala).
const MaxInlineSize = 16 << 10

// Content types OpenWhisk gives code attachments.
const (
	TextCodeType   = "text/plain; charset=UTF-8"
	BinaryCodeType = "application/octet-stream"
)

// EncodeCode sets a.Exec.Code for code as OpenWhisk stores it and returns the
// attachment the backend must store the bytes under ("" when the code is inlined) and
// its content type.
func EncodeCode(a *activation.WhiskAction, code []byte) (attachment, contentType string, err error) {
	contentType = TextCodeType
	if a.Exec.Binary {
		contentType = BinaryCodeType
	}
	var att activation.Attachment
	if len(code) < MaxInlineSize {
		sum := sha256.Sum256(code)
		n := int64(len(code))
		// URL-safe alphabet with padding: Java's Base64.getUrlEncoder.
		att = activation.Attachment{
			AttachmentName: "mem:" + base64.URLEncoding.EncodeToString(code),
			AttachmentType: contentType,
			Length:         &n,
			Digest:         "sha256-" + hex.EncodeToString(sum[:]),
		}
	} else {
		attachment = uuid.NewString()
		att = activation.Attachment{AttachmentName: "couch:" + attachment, AttachmentType: contentType}
	}
	raw, err := json.Marshal(att)
	if err != nil {
		return "", "", fmt.Errorf("encode code: %w", err)
	}
	a.Exec.Code = raw
	return attachment, contentType, nil
}

// CodeAttachment returns the attachment name an action's code is stored under, or ""
// when the code is a plain string or inline.
func CodeAttachment(a *activation.WhiskAction) string {
	att, ok := codeObject(a)
	if !ok {
		return ""
	}
	name := att.AttachmentName
	switch {
	case strings.HasPrefix(name, "couch:"):
		return strings.TrimPrefix(name, "couch:")
	case strings.Contains(name, ":"):
		return ""
	default:
		return name // a legacy relative name: a CouchDB attachment too
	}
}

func codeObject(a *activation.WhiskAction) (activation.Attachment, bool) {
	var att activation.Attachment
	c := strings.TrimSpace(string(a.Exec.Code))
	if !strings.HasPrefix(c, "{") || json.Unmarshal(a.Exec.Code, &att) != nil {
		return att, false
	}
	return att, true
}

// ReadCode returns an action's code bytes: a plain string, inline "mem:" code, or an
// attachment fetched from st.
func ReadCode(ctx context.Context, st activation.Store, a *activation.WhiskAction) ([]byte, error) {
	if len(a.Exec.Code) == 0 {
		return nil, nil
	}
	var s string
	if json.Unmarshal(a.Exec.Code, &s) == nil {
		return []byte(s), nil
	}
	att, ok := codeObject(a)
	if !ok {
		return nil, fmt.Errorf("read code: exec.code is neither a string nor an attachment")
	}
	if rest, ok := strings.CutPrefix(att.AttachmentName, "mem:"); ok {
		b, err := base64.URLEncoding.DecodeString(rest)
		if err != nil {
			b, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(rest, "="))
		}
		if err != nil {
			return nil, fmt.Errorf("read code: inline code: %w", err)
		}
		return b, nil
	}
	name := CodeAttachment(a)
	if name == "" {
		return nil, fmt.Errorf("read code: unsupported attachment %q", att.AttachmentName)
	}
	id := a.ID
	if id == "" {
		id = a.Namespace + "/" + a.Name
	}
	return st.GetAttachment(ctx, id, name)
}
