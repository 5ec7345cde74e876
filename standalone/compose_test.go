package standalone_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"gopkg.in/yaml.v2"
)

// The compose stack cannot be started here (no Docker engine): these tests check the
// file's structure, and `docker compose config` validates it where the plugin exists.

type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Build       any               `yaml:"build"`
		Command     any               `yaml:"command"`
		Privileged  bool              `yaml:"privileged"`
		Devices     []string          `yaml:"devices"`
		Environment map[string]string `yaml:"environment"`
		Ports       []string          `yaml:"ports"`
		DependsOn   []string          `yaml:"depends_on"`
	} `yaml:"services"`
}

func TestComposeFile(t *testing.T) {
	b, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for _, s := range []string{"zookeeper", "kafka", "db", "db-init", "controller", "invoker"} {
		if _, ok := f.Services[s]; !ok {
			t.Errorf("service %s missing", s)
		}
	}
	ctl := f.Services["controller"]
	for k, v := range map[string]string{
		"CONFIG_whisk_spi_LoadBalancerProvider":   "org.apache.openwhisk.core.loadBalancer.ShardingContainerPoolBalancer",
		"CONFIG_whisk_spi_EntitlementSpiProvider": "org.apache.openwhisk.core.entitlement.LocalEntitlementProvider",
		"KAFKA_HOSTS": "kafka:9092",
		"CONFIG_whisk_couchdb_databases_WhiskAuth": "local_subjects",
		"PORT": "8888",
	} {
		if ctl.Environment[k] != v {
			t.Errorf("controller %s = %q, want %q", k, ctl.Environment[k], v)
		}
	}
	if !strings.Contains(ctl.Environment["RUNTIMES_MANIFEST"], `"kind":"nodejs:20","default":true`) {
		t.Errorf("controller RUNTIMES_MANIFEST lacks nodejs:20 as the default: %s", ctl.Environment["RUNTIMES_MANIFEST"])
	}
	inv := f.Services["invoker"]
	if inv.Build == nil || !inv.Privileged || len(inv.Devices) != 1 || !strings.HasPrefix(inv.Devices[0], "/dev/kvm") {
		t.Errorf("invoker: build %v privileged %v devices %v", inv.Build, inv.Privileged, inv.Devices)
	}
	for _, k := range []string{"KAFKA_HOSTS", "CONFIG_whisk_couchdb_host", "CONFIG_whisk_couchdb_username",
		"CONFIG_whisk_couchdb_password", "CONFIG_whisk_couchdb_databases_WhiskEntity",
		"CONFIG_whisk_couchdb_databases_WhiskActivation", "CONFIG_whisk_containerPool_userMemory"} {
		if inv.Environment[k] == "" || inv.Environment[k] != ctl.Environment[k] {
			t.Errorf("invoker %s = %q, controller has %q", k, inv.Environment[k], ctl.Environment[k])
		}
	}
	cmd, _ := inv.Command.([]any)
	if len(cmd) == 0 || cmd[0] != "serve" {
		t.Errorf("invoker command %v, want serve ...", inv.Command)
	}
	// The guest key the quickstart uses is the one db-init writes.
	init, _ := f.Services["db-init"].Command.([]any)
	if len(init) != 1 || !strings.Contains(init[0].(string), "subject guest 23bc46b1-71f6-4ed5-8c54-816aa4f8c502 123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP") {
		t.Errorf("db-init does not create the guest subject")
	}
}

func TestComposeConfig(t *testing.T) {
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("no docker CLI on this machine")
	}
	if out, err := exec.Command(docker, "compose", "version").CombinedOutput(); err != nil {
		t.Skipf("the docker CLI has no compose plugin here (%q): docker compose config not run",
			strings.TrimSpace(string(out)))
	}
	out, err := exec.Command(docker, "compose", "-f", "../docker-compose.yml", "config", "--quiet").CombinedOutput()
	if err != nil {
		t.Errorf("docker compose config: %v\n%s", err, out)
	}
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{"FROM golang:1.26", "go build", "./cmd/invoker", "python3", "ENTRYPOINT [\"/usr/local/bin/invoker\"]"} {
		if !strings.Contains(s, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}
