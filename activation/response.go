package activation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Messages of OpenWhisk's ErrorResponse.scala and ActivationResult.scala
// (openwhisk-protocol.md §2.1, §4.2, §4.3).
const (
	msgNotFound            = "Action could not be found or may have been deleted."
	msgNotCompatible       = "Action version is not compatible and cannot be invoked."
	msgNotFetched          = "Action could not be fetched."
	msgProvisionFailed     = "Failed to provision resources to run the action."
	msgRunExited           = "The action did not produce a valid response and exited unexpectedly."
	msgInitExited          = "The action did not initialize and exited unexpectedly."
	msgInvalidRunResponse  = "The action did not produce a valid JSON or JSON Array response"
	msgLogsMissing         = "The action did not initialize or run as expected. Log data might be missing."
	msgLogsTruncatedFormat = "Logs were truncated because the total bytes size exceeds the limit of %d bytes."
)

func timeoutMessage(limit time.Duration, init bool) string {
	s := fmt.Sprintf("The action exceeded its time limits of %d milliseconds", limit.Milliseconds())
	if init {
		return s + " during initialization."
	}
	return s + "."
}

// memoryMessage is seuss's wording (a Docker invoker reports an OOM-killed action as an
// unexpected exit): the action exceeded its memory limit.
func memoryMessage(mb int) string {
	return fmt.Sprintf("The action exceeded its memory limit of %d MB.", mb)
}

// errorResult is {"error": msg}.
func errorResult(msg string) json.RawMessage {
	b, _ := Marshal(map[string]string{"error": msg})
	return b
}

// Response builds an ActivationResponse.
func Response(status int, result json.RawMessage, size *int) ActivationResponse {
	return ActivationResponse{StatusCode: status, Result: result, Size: size}
}

// ResponseLimits are the size limits applied to a run's response (user limits
// maxPayloadSize and truncationSize; both 1 MiB by default).
type ResponseLimits struct {
	MaxPayload int
	Truncation int
}

// OutcomeResponse maps what the executor observed to OpenWhisk's status code and result,
// as ActivationResult.processInitResponseContent / processRunResponseContent and the
// container proxy do (openwhisk-protocol.md §4.2).
func OutcomeResponse(o *Outcome, l Limits, rl ResponseLimits) ActivationResponse {
	switch {
	case errors.Is(o.Err, ErrInitTimeout):
		return Response(StatusDeveloperError, errorResult(timeoutMessage(l.Timeout, true)), nil)
	case errors.Is(o.Err, ErrMemoryLimit):
		return Response(StatusDeveloperError, errorResult(memoryMessage(l.MemoryMB)), nil)
	case errors.Is(o.Err, ErrInitExited):
		return Response(StatusDeveloperError, errorResult(msgInitExited), nil)
	case !o.InitStart.IsZero() && o.InitStatus != 0 && o.InitStatus != 200:
		return Response(StatusDeveloperError, errorResult(initErrorMessage(o.InitResponse)), nil)
	case errors.Is(o.Err, ErrRunTimeout):
		return Response(StatusDeveloperError, errorResult(timeoutMessage(l.Timeout, false)), nil)
	case errors.Is(o.Err, ErrRunExited), o.Err != nil:
		return Response(StatusDeveloperError, errorResult(msgRunExited), nil)
	}
	body := o.RunResponse
	size := len(body)
	if rl.MaxPayload > 0 && size > rl.MaxPayload {
		t := body
		if rl.Truncation > 0 && len(t) > rl.Truncation {
			t = t[:rl.Truncation]
		}
		msg := fmt.Sprintf("The action produced a response that exceeded the allowed length: %d > %d bytes. The truncated response was: %s",
			size, rl.MaxPayload, strings.ToValidUTF8(string(t), ""))
		return Response(StatusApplicationError, errorResult(msg), &size)
	}
	trimmed := bytes.TrimSpace(body)
	var obj map[string]json.RawMessage
	isObj := len(trimmed) > 0 && trimmed[0] == '{' && json.Unmarshal(trimmed, &obj) == nil
	isArr := !isObj && len(trimmed) > 0 && trimmed[0] == '[' && json.Valid(trimmed)
	if o.RunStatus == 200 {
		switch {
		case isObj:
			if e, ok := obj["error"]; ok {
				return Response(StatusApplicationError, wrapError(e), &size)
			}
			return Response(StatusSuccess, compactJSON(trimmed), &size)
		case isArr:
			return Response(StatusSuccess, compactJSON(trimmed), &size)
		}
	} else if isObj {
		if e, ok := obj["error"]; ok {
			return Response(StatusDeveloperError, wrapError(e), &size)
		}
	}
	if len(trimmed) == 0 {
		return Response(StatusDeveloperError, errorResult(msgInvalidRunResponse+"."), &size)
	}
	return Response(StatusDeveloperError, errorResult(msgInvalidRunResponse+": "+string(trimmed)), &size)
}

func initErrorMessage(body json.RawMessage) string {
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) == nil {
		if e, ok := obj["error"]; ok {
			var s string
			if json.Unmarshal(e, &s) == nil {
				return s
			}
			return string(compactJSON(e))
		}
	}
	return "The action failed during initialization: " + string(bytes.TrimSpace(body))
}

func wrapError(e json.RawMessage) json.RawMessage {
	b, _ := Marshal(map[string]json.RawMessage{"error": compactJSON(e)})
	return b
}

func compactJSON(b []byte) json.RawMessage {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return json.RawMessage(b)
	}
	return buf.Bytes()
}

// FormatLogLine formats one line as OpenWhisk's log store does: the RFC 3339 time with
// nanoseconds (trailing zeros trimmed, as Docker writes it) left-justified in 30
// columns, the stream, the text (openwhisk-protocol.md §4.3).
func FormatLogLine(t time.Time, stream, text string) string {
	return fmt.Sprintf("%-30s %s: %s", t.UTC().Format(time.RFC3339Nano), stream, strings.TrimRight(text, "\r\n"))
}

// FormatLogs formats an outcome's logs, adding OpenWhisk's truncation line and, after a
// developer error, its "might be missing" line.
func FormatLogs(o *Outcome, l Limits, status int, now time.Time) []string {
	out := make([]string, 0, len(o.Logs)+2)
	for _, ll := range o.Logs {
		out = append(out, FormatLogLine(ll.Time, ll.Stream, ll.Text))
	}
	if o.LogsTruncated {
		out = append(out, FormatLogLine(now, "stderr", fmt.Sprintf(msgLogsTruncatedFormat, l.LogBytes)))
	}
	if status == StatusDeveloperError {
		out = append(out, FormatLogLine(now, "stderr", msgLogsMissing))
	}
	return out
}
