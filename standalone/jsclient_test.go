package standalone_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seuss-go/seuss/controller"
)

// The JavaScript client (npm openwhisk), a second wsk-compatible client, against
// standalone. .ci/run installs it into .peers/.
const jsClientScript = `
const openwhisk = require('openwhisk');
const ow = openwhisk({apihost: process.env.APIHOST, api_key: process.env.AUTH, namespace: '_'});
const sleep = ms => new Promise(r => setTimeout(r, ms));
(async () => {
  const out = {};
  await ow.actions.create({name: 'jshello', kind: 'nodejs:default',
    action: 'function main(p) { console.log("js log"); return {hi: p.name} }'});
  out.result = await ow.actions.invoke({name: 'jshello', params: {name: 'js'}, blocking: true, result: true});
  const nb = await ow.actions.invoke({name: 'jshello', params: {name: 'nb'}});
  let act;
  for (let i = 0; i < 600 && !act; i++) {
    try { act = await ow.activations.get({name: nb.activationId}); } catch (e) { await sleep(50); }
  }
  out.polled = act.response;
  out.logs = (await ow.activations.logs({name: nb.activationId})).logs;
  out.activationResult = await ow.activations.result({name: nb.activationId});
  out.listed = (await ow.activations.list({name: 'jshello', limit: 5})).length;
  out.actions = (await ow.actions.list()).map(a => a.name);
  await ow.actions.update({name: 'jshello', action: 'function main() { return {error: "nope"} }'});
  out.version = (await ow.actions.get({name: 'jshello'})).version;
  try { await ow.actions.invoke({name: 'jshello', blocking: true, result: true}); }
  catch (e) { out.errorStatus = e.statusCode; out.errorMessage = e.message; }
  await ow.actions.delete({name: 'jshello'});
  try { await ow.actions.get({name: 'jshello'}); } catch (e) { out.deletedStatus = e.statusCode; }
  const bad = openwhisk({apihost: process.env.APIHOST, api_key: 'nobody:nothing', namespace: '_'});
  try { await bad.actions.list(); } catch (e) { out.badAuthStatus = e.statusCode; }
  console.log(JSON.stringify(out));
})().catch(e => { console.error(e); process.exit(1); });
`

func TestJavaScriptClient(t *testing.T) {
	mods, _ := filepath.Abs("../.peers/node_modules")
	if _, err := os.Stat(filepath.Join(mods, "openwhisk", "package.json")); err != nil {
		t.Skip("npm openwhisk is not installed in .peers/ (.ci/run installs it)")
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("no node")
	}
	st, _ := startStack(t)
	script := filepath.Join(t.TempDir(), "client.js")
	if err := os.WriteFile(script, []byte(jsClientScript), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", script)
	cmd.Env = append(os.Environ(), "NODE_PATH="+mods,
		"APIHOST="+st.APIHost, "AUTH="+controller.GuestAuth)
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("client.js: %v\n%s%s", err, out, stderr)
	}
	var got struct {
		Result           map[string]any
		Polled           map[string]any
		Logs             []string
		ActivationResult map[string]any
		Listed           int
		Actions          []string
		Version          string
		ErrorStatus      int
		DeletedStatus    int
		BadAuthStatus    int
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("client.js output %q: %v", out, err)
	}
	if got.Result["hi"] != "js" || got.Polled["status"] != "success" || got.ActivationResult["success"] != true ||
		len(got.Logs) != 1 || !strings.Contains(got.Logs[0], "stdout: js log") || got.Listed != 2 ||
		len(got.Actions) != 1 || got.Version != "0.0.2" || got.ErrorStatus != 502 ||
		got.DeletedStatus != 404 || got.BadAuthStatus != 401 {
		t.Errorf("client.js: %s", out)
	}
}
