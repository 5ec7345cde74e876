package runtimes

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"syscall"
	"time"
)

// ErrBadReply is wrapped by DecodeReply for a line that is not a launcher answer.
var ErrBadReply = errors.New("runtimes: malformed launcher answer")

// DecodeReply splits one answer line from fd 3 (without or with its line end) into the
// HTTP-equivalent status and the JSON body (see the package comment). The body aliases
// line. A bare line is returned as it is, with status 200, even if it is not valid
// JSON: judging the body is the caller's business, as it is the invoker's with the
// stock runtimes.
func DecodeReply(line []byte) (status int, body json.RawMessage, err error) {
	line = bytes.TrimRight(line, "\r\n")
	if len(line) == 0 || line[0] != '!' {
		return 200, json.RawMessage(line), nil
	}
	sp := bytes.IndexByte(line, ' ')
	if sp != 4 {
		return 0, nil, fmt.Errorf("%w: %.40q", ErrBadReply, line)
	}
	status = 0
	for _, c := range line[1:4] {
		if c < '0' || c > '9' {
			return 0, nil, fmt.Errorf("%w: %.40q", ErrBadReply, line)
		}
		status = status*10 + int(c-'0')
	}
	if status < 100 {
		return 0, nil, fmt.Errorf("%w: status %d", ErrBadReply, status)
	}
	return status, json.RawMessage(line[5:]), nil
}

// EncodeReply is DecodeReply's inverse (used by tests and fakes).
func EncodeReply(status int, body []byte) []byte {
	if status == 200 {
		return append(append([]byte(nil), body...), '\n')
	}
	return append([]byte(fmt.Sprintf("!%03d ", status)), append(append([]byte(nil), body...), '\n')...)
}

// Sentinel ends each stream's logs of one activation.
const Sentinel = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"

// WarmupInit and WarmupRun are the dummy activation of the warm-up hook: send
// WarmupInit(kind), read its answer, send WarmupRun, read its answer and both
// sentinels; the launcher is then pristine, awaiting the real init.
func WarmupInit(k Kind) []byte {
	code := `function main(args) { return { warm: JSON.stringify(args).length } }`
	if k.lang == "python" {
		code = "import json\ndef main(args):\n    return {\"warm\": len(json.dumps(args))}\n"
	}
	msg := map[string]any{
		"warmup": true,
		"value":  map[string]any{"name": "seuss-warmup", "main": "main", "code": code, "binary": false, "env": map[string]string{}},
	}
	b, _ := json.Marshal(msg)
	return append(b, '\n')
}

// WarmupRun is the run line of the warm-up activation.
var WarmupRun = []byte(`{"value":{"warm":"up","n":[1,2,3]},"namespace":"seuss","action_name":"/seuss/warmup","action_version":"0.0.1","activation_id":"00000000000000000000000000000000","transaction_id":"warmup","deadline":"0"}` + "\n")

// The flush request (see the package comment): the signal an executor sends a launcher
// that outlived its time limit, how long it waits for the answer, and the answer on fd 3.
const (
	FlushSignal = syscall.SIGUSR2
	FlushWait   = 100 * time.Millisecond
)

// FlushedLine is the launcher's answer to the flush request, once its logs are written.
var FlushedLine = []byte("!flushed\n")
