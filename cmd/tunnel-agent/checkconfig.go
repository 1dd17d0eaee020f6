package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/config"
	"github.com/tunnel-agent/tunnel-agent/agent/notify"
)

// expiryWarning: check-config warns this long before a certificate expires.
const expiryWarning = 30 * 24 * time.Hour

// report collects check-config findings: problems make it fail.
type report struct {
	out      io.Writer
	problems int
}

func (r *report) ok(format string, a ...any)   { fmt.Fprintf(r.out, "ok: "+format+"\n", a...) }
func (r *report) warn(format string, a ...any) { fmt.Fprintf(r.out, "warning: "+format+"\n", a...) }
func (r *report) fail(format string, a ...any) {
	r.problems++
	fmt.Fprintf(r.out, "problem: "+format+"\n", a...)
}

// checkConfigFlags builds check-config's flags: every setting plus its own
// (the man page and completions are generated from this same set).
func checkConfigFlags() (s *settings, asUser *string, connect *bool) {
	s = newSettings("check-config", fromMQTT)
	asUser = s.fs.String("as-user", "", "check that this `user` can read the files (default: "+serviceUser+" when run as root, else the current user)")
	connect = s.fs.Bool("connect", false, "also connect to the MQTT broker and subscribe, then report the result and exit")
	return s, asUser, connect
}

// cmdCheckConfig validates the configuration and checks what `run` will
// need: the certificate's dates and its key, the root CA, that the service
// user can read every file, that the unit's sandbox does not hide them, and
// with --connect a real MQTT connection and subscription. It prints the
// effective settings (never key material).
func cmdCheckConfig(args []string, stdout io.Writer) error {
	s, asUser, connect := checkConfigFlags()
	if err := s.parse(args); err != nil {
		return err
	}
	cfg, err := s.load(nil)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, "# effective settings\n"+cfg.Effective())
	if _, err := s.loadValid(); err != nil {
		return err
	}
	r := &report{out: stdout}
	fmt.Fprintln(stdout, "# checks")
	checkCertificate(r, cfg, time.Now())
	checkRootCA(r, "root_ca", cfg.RootCA)
	if cfg.CAFile != "" {
		checkRootCA(r, "ca_file", cfg.CAFile)
	}
	checkAccess(r, cfg, s.loaded, *asUser)
	checkSandbox(r, cfg, unitInstalled())
	if *connect && r.problems == 0 {
		checkConnect(r, cfg)
	}
	if r.problems > 0 {
		return fmt.Errorf("%d problem(s) found: `run` would fail or lose access; fix them and run check-config again", r.problems)
	}
	fmt.Fprintln(stdout, "# configuration OK")
	return nil
}

// checkCertificate: the key matches, and the certificate is valid now and
// for the next 30 days.
func checkCertificate(r *report, cfg config.Config, now time.Time) {
	pair, err := tls.LoadX509KeyPair(cfg.Cert, cfg.Key)
	if err != nil {
		r.fail("cert %s / key %s: %v: check the paths and that the key is the one issued with this certificate", cfg.Cert, cfg.Key, err)
		return
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		r.fail("cert %s: %v", cfg.Cert, err)
		return
	}
	r.ok("cert %s matches key %s (subject %q)", cfg.Cert, cfg.Key, leaf.Subject.CommonName)
	checkDates(r, "cert "+cfg.Cert, leaf, now,
		"create a new certificate for the thing (aws iot create-keys-and-certificate), attach the policy and thing, and replace cert and key")
}

func checkDates(r *report, what string, c *x509.Certificate, now time.Time, todo string) {
	day := func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }
	switch {
	case now.After(c.NotAfter):
		r.fail("%s expired on %s: %s", what, day(c.NotAfter), todo)
	case now.Before(c.NotBefore):
		r.fail("%s is not valid before %s: check the device clock (date -u)", what, day(c.NotBefore))
	case c.NotAfter.Sub(now) < expiryWarning:
		r.warn("%s expires on %s, in %d days: %s", what, day(c.NotAfter), int(c.NotAfter.Sub(now).Hours()/24), todo)
	default:
		r.ok("%s valid until %s", what, day(c.NotAfter))
	}
}

// checkRootCA: the file holds at least one PEM certificate, all parseable.
func checkRootCA(r *report, key, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		r.fail("%s %s: %v", key, path, err)
		return
	}
	n := 0
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			r.fail("%s %s: certificate %d does not parse: %v", key, path, n+1, err)
			return
		}
		n++
		if time.Now().After(c.NotAfter) {
			r.warn("%s %s: %q expired on %s", key, path, c.Subject.CommonName, c.NotAfter.UTC().Format(time.DateOnly))
		}
	}
	if n == 0 {
		r.fail("%s %s holds no PEM certificate: for AWS IoT download https://www.amazontrust.com/repository/AmazonRootCA1.pem", key, path)
		return
	}
	r.ok("%s %s: %d certificate(s)", key, path, n)
}

// checkConnect makes a real connection and subscription.
func checkConnect(r *report, cfg config.Config) {
	src, err := notify.NewMQTTSource(notify.MQTTConfig{
		Endpoint: cfg.Endpoint, Port: cfg.Port, ThingName: cfg.ThingName, ClientID: cfg.EffectiveClientID(),
		CertFile: cfg.Cert, KeyFile: cfg.Key, RootCAFile: cfg.RootCA, Proxy: cfg.HTTPSProxy,
	})
	if err != nil {
		r.fail("mqtt: %v", err)
		return
	}
	fmt.Fprintf(r.out, "connecting to %s:%d as client id %q (a running agent with this id is disconnected meanwhile and reconnects)\n",
		cfg.Endpoint, cfg.Port, cfg.EffectiveClientID())
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	err = src.Check(ctx)
	var cause notify.Cause
	switch {
	case err == nil:
		r.ok("mqtt: connected and subscribed to %s", src.Topic())
	case errors.As(err, &cause):
		r.fail("mqtt: %s: %s; to do: %s", cause.Kind, cause.Detail, cause.Hint)
	default:
		r.fail("mqtt: %v", err)
	}
}
