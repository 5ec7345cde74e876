package activation

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// SystemLimits are the invoker-wide bounds of action limits (application.conf
// whisk.time-limit, memory, log-limit: time 100 ms-5 min, memory 128-512 MB, logs
// 0-10 MB) and the default response size limits (whisk.activation.payload).
type SystemLimits struct {
	MinTimeoutMs, MaxTimeoutMs int
	MinMemoryMB, MaxMemoryMB   int
	MinLogsMB, MaxLogsMB       int
	MaxPayload, Truncation     int
}

// DefaultSystemLimits are OpenWhisk's defaults.
func DefaultSystemLimits() SystemLimits {
	return SystemLimits{
		MinTimeoutMs: 100, MaxTimeoutMs: 300000,
		MinMemoryMB: 128, MaxMemoryMB: 512,
		MinLogsMB: 0, MaxLogsMB: 10,
		MaxPayload: 1 << 20, Truncation: 1 << 20,
	}
}

// userLimits is the part of Identity.limits (UserLimits) the invoker applies.
type userLimits struct {
	MinActionMemory  *int    `json:"minActionMemory"`
	MaxActionMemory  *int    `json:"maxActionMemory"`
	MinActionLogs    *int    `json:"minActionLogs"`
	MaxActionLogs    *int    `json:"maxActionLogs"`
	MinActionTimeout *int    `json:"minActionTimeout"`
	MaxActionTimeout *int    `json:"maxActionTimeout"`
	MaxPayloadSize   *string `json:"maxPayloadSize"`
	TruncationSize   *string `json:"truncationSize"`
}

func (id Identity) userLimits() userLimits {
	var u userLimits
	if len(id.Limits) > 0 {
		_ = json.Unmarshal(id.Limits, &u) // a malformed limits object means defaults
	}
	return u
}

// checkLimits verifies the action's limits against the system's and the user's
// (ActionLimits.checkLimits); the error text becomes an application error.
func (s SystemLimits) checkLimits(l ActionLimits, id Identity, userMemoryMB int) error {
	u := id.userLimits()
	pick := func(user *int, def int) int {
		if user != nil {
			return *user
		}
		return def
	}
	check := func(what string, v, lo, hi int, unit string) error {
		if v < lo {
			return fmt.Errorf("%s %d %s below allowed threshold of %d %s.", what, v, unit, lo, unit)
		}
		if v > hi {
			return fmt.Errorf("%s %d %s exceeds allowed threshold of %d %s.", what, v, unit, hi, unit)
		}
		return nil
	}
	if err := check("Timeout", l.Timeout, pick(u.MinActionTimeout, s.MinTimeoutMs), pick(u.MaxActionTimeout, s.MaxTimeoutMs), "milliseconds"); err != nil {
		return err
	}
	if err := check("Memory", l.Memory, pick(u.MinActionMemory, s.MinMemoryMB), pick(u.MaxActionMemory, s.MaxMemoryMB), "MB"); err != nil {
		return err
	}
	if err := check("Log limit", l.Logs, pick(u.MinActionLogs, s.MinLogsMB), pick(u.MaxActionLogs, s.MaxLogsMB), "MB"); err != nil {
		return err
	}
	if userMemoryMB > 0 && l.Memory > userMemoryMB {
		return fmt.Errorf("Memory %d MB exceeds the invoker's user memory of %d MB.", l.Memory, userMemoryMB)
	}
	return nil
}

// responseLimits are the user's maxPayloadSize and truncationSize, else the system's.
func (s SystemLimits) responseLimits(id Identity) ResponseLimits {
	u := id.userLimits()
	rl := ResponseLimits{MaxPayload: s.MaxPayload, Truncation: s.Truncation}
	if u.MaxPayloadSize != nil {
		if n, ok := ParseByteSize(*u.MaxPayloadSize); ok {
			rl.MaxPayload = int(n)
		}
	}
	if u.TruncationSize != nil {
		if n, ok := ParseByteSize(*u.TruncationSize); ok {
			rl.Truncation = int(n)
		}
	}
	return rl
}

// ParseByteSize reads OpenWhisk's ByteSize strings ("1048576 B", "2048 MB", "1 m"),
// as Size.scala's reader does (case-insensitive B, K(B), M(B), G(B)).
func ParseByteSize(s string) (int64, bool) {
	s = strings.ToUpper(strings.TrimSpace(s))
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, false
	}
	switch strings.TrimSpace(s[i:]) {
	case "B", "":
		return n, true
	case "K", "KB":
		return n << 10, true
	case "M", "MB":
		return n << 20, true
	case "G", "GB":
		return n << 30, true
	}
	return 0, false
}
