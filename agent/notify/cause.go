package notify

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"syscall"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// CauseKind names why an MQTT connection attempt failed or a connection
// ended. The values appear in logs as cause=<kind>.
type CauseKind string

// Causes, from the network up.
const (
	CauseDNS           CauseKind = "dns"
	CauseProxy         CauseKind = "proxy"
	CauseRefused       CauseKind = "tcp_refused"
	CauseUnreachable   CauseKind = "tcp_unreachable"
	CauseTimeout       CauseKind = "timeout"
	CauseServerCert    CauseKind = "tls_server_cert"   // we do not trust the broker
	CauseClientCert    CauseKind = "tls_client_cert"   // the broker does not accept our certificate
	CauseTLS           CauseKind = "tls"               // another TLS failure
	CauseConnack       CauseKind = "connack_refused"   // CONNACK with a failure code
	CauseClosedConnect CauseKind = "closed_on_connect" // closed after CONNECT, no CONNACK
	CauseTakenOver     CauseKind = "closed_soon_after_connect"
	CauseSubscribe     CauseKind = "suback_refused"
	CauseLost          CauseKind = "connection_lost"
	CauseOther         CauseKind = "other"
)

// Cause is a classified failure: what happened and what to do about it.
// Detail and Hint never contain key material or tokens.
type Cause struct {
	Kind   CauseKind
	Detail string // what happened, e.g. "x509: certificate signed by unknown authority"
	Hint   string // what to do
	Err    error
}

func (c Cause) Error() string { return fmt.Sprintf("%s: %s: %s", c.Kind, c.Detail, c.Hint) }

func (c Cause) Unwrap() error { return c.Err }

// TLS alert codes (RFC 8446 §6) a broker sends about our certificate.
const (
	alertBadCertificate     = 42
	alertUnsupportedCert    = 43
	alertCertificateRevoked = 44
	alertCertificateExpired = 45
	alertCertificateUnknown = 46
	alertUnknownCA          = 48
	alertAccessDenied       = 49
	alertCertificateReq     = 116
)

// classifyParams is what classify knows besides the error.
type classifyParams struct {
	broker, clientID string
	handshakeDone    bool          // TLS completed: later failures are MQTT's
	up               time.Duration // > 0: the connection was up this long
	takeover         time.Duration // a drop sooner than this after connecting is a take-over
	certNotAfter     time.Time     // of the device certificate, zero if unknown
	now              time.Time
}

// classify turns a connection error into a Cause.
func classify(err error, p classifyParams) Cause {
	c := Cause{Err: err, Detail: errText(err)}
	switch {
	case p.up > 0:
		return classifyLost(c, p)
	case errors.Is(err, errProxy):
		c.Kind, c.Hint = CauseProxy, "check https_proxy (or HTTPS_PROXY): the proxy must allow CONNECT to "+p.broker
	case isConnack(err):
		return classifyConnack(c, err, p)
	}
	if c.Kind != "" {
		return c
	}
	if alert, ok := tlsAlert(err); ok {
		return classifyAlert(c, alert, p)
	}
	var dnsErr *net.DNSError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &dnsErr):
		c.Kind, c.Hint = CauseDNS, "cannot resolve the endpoint: check endpoint is your account's data endpoint "+
			"(aws iot describe-endpoint --endpoint-type iot:Data-ATS) and that DNS works on the device"
	case errors.Is(err, syscall.ECONNREFUSED):
		c.Kind, c.Hint = CauseRefused, "nothing listens on "+p.broker+": check endpoint and port (8883, or 443)"
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETDOWN):
		c.Kind, c.Hint = CauseUnreachable, "no route to "+p.broker+": check the network connection, or that a firewall lets port 8883 out (use port: 443 if only HTTPS is allowed)"
	case errors.As(err, &unknownCA):
		c.Kind, c.Hint = CauseServerCert, "the broker's certificate is not signed by root_ca: for AWS IoT use AmazonRootCA1.pem (https://www.amazontrust.com/repository/AmazonRootCA1.pem)"
	case errors.As(err, &hostErr):
		c.Kind, c.Hint = CauseServerCert, "the broker's certificate does not name the endpoint: use the endpoint host exactly as describe-endpoint prints it"
	case errors.As(err, &invalid):
		c.Kind, c.Hint = CauseServerCert, "the broker's certificate is not valid now: check the device clock (date -u) and root_ca"
	case isTimeout(err) && p.handshakeDone:
		c.Kind, c.Hint = CauseTimeout, "the broker took the connection but sent no CONNACK: check endpoint and port"
	case isTimeout(err):
		c.Kind, c.Hint = CauseTimeout, "no answer from "+p.broker+": check the network and that a firewall lets the port out"
	case p.handshakeDone && isClosed(err):
		c.Kind, c.Hint = CauseClosedConnect, fmt.Sprintf("the broker closed the connection after CONNECT without answering. AWS IoT does this "+
			"when the certificate is inactive or not attached to the thing, or the policy does not allow iot:Connect on "+
			"client/%s: check the certificate status and the policy", p.clientID)
	case isClosed(err):
		c.Kind, c.Hint = CauseTLS, "the broker closed the connection during the TLS handshake: check the port (8883, or 443) and the certificate"
	case isTLS(err):
		c.Kind, c.Hint = CauseTLS, "TLS failed: check endpoint, port and root_ca"
	default:
		c.Kind, c.Hint = CauseOther, "check the network, endpoint and port"
	}
	return c
}

func classifyLost(c Cause, p classifyParams) Cause {
	if p.up < p.takeover && isClosed(c.Err) {
		c.Kind = CauseTakenOver
		c.Detail = fmt.Sprintf("the broker closed the connection %s after accepting it (%s)", p.up.Round(time.Millisecond), c.Detail)
		c.Hint = fmt.Sprintf("another client is probably connected with client id %q (AWS IoT allows one connection per client id "+
			"and drops the older one): the Greengrass nucleus and the AWS IoT Device Client connect as the thing name. "+
			"Set client_id to a unique value such as \"<thing>-tunnel\" and allow it in the policy (iot:Connect on client/<id>)", p.clientID)
		return c
	}
	c.Kind, c.Hint = CauseLost, "reconnecting; if this repeats, check the network"
	return c
}

func classifyConnack(c Cause, err error, p classifyParams) Cause {
	c.Kind = CauseConnack
	switch {
	case errors.Is(err, packets.ErrorRefusedNotAuthorised), errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword):
		c.Hint = fmt.Sprintf("the broker refused this device: check the certificate is active and attached to a policy allowing iot:Connect on client/%s", p.clientID)
	case errors.Is(err, packets.ErrorRefusedIDRejected):
		c.Hint = fmt.Sprintf("the broker rejected client id %q: set client_id to the thing name or another id the policy allows", p.clientID)
	case errors.Is(err, packets.ErrorRefusedServerUnavailable):
		c.Hint = "the broker is unavailable; retrying"
	default:
		c.Hint = "the broker does not accept MQTT 3.1.1 here: check endpoint and port"
	}
	c.Detail = "CONNACK refused: " + c.Detail
	return c
}

func classifyAlert(c Cause, alert uint8, p classifyParams) Cause {
	c.Kind = CauseClientCert
	expired := !p.certNotAfter.IsZero() && p.now.After(p.certNotAfter)
	switch {
	case alert == alertCertificateExpired || expired:
		c.Hint = "the device certificate has expired"
		if !p.certNotAfter.IsZero() {
			c.Hint += " (not after " + p.certNotAfter.UTC().Format(time.RFC3339) + ")"
		}
		c.Hint += ": issue a new certificate for the thing (or check the device clock: date -u)"
	case alert == alertCertificateRevoked:
		c.Hint = "the device certificate is revoked: issue and register a new one"
	case alert == alertCertificateReq:
		c.Hint = "the broker requires a client certificate: set cert and key"
	case alert == alertUnknownCA, alert == alertBadCertificate, alert == alertCertificateUnknown,
		alert == alertUnsupportedCert, alert == alertAccessDenied:
		c.Hint = "the broker does not accept the device certificate: check it is registered and ACTIVE in this account and region " +
			"(aws iot describe-certificate), and that cert/key are the pair issued for this thing"
	default:
		c.Kind, c.Hint = CauseTLS, "TLS alert from the broker: check endpoint, port and certificates"
	}
	return c
}

// tlsAlert extracts the alert a TLS peer sent. crypto/tls reports it as
// *net.OpError{Op: "remote error"} around an unexported uint8 type (only
// QUIC gets tls.AlertError), so the code is read by kind, not by text.
func tlsAlert(err error) (uint8, bool) {
	var ae tls.AlertError
	if errors.As(err, &ae) {
		return uint8(ae), true
	}
	var op *net.OpError
	for e := err; errors.As(e, &op); e = op.Err {
		if op.Op == "remote error" && op.Err != nil {
			if v := reflect.ValueOf(op.Err); v.Kind() == reflect.Uint8 {
				return uint8(v.Uint()), true
			}
		}
		if op.Err == nil {
			break
		}
	}
	return 0, false
}

func isConnack(err error) bool {
	for _, e := range []error{packets.ErrorRefusedBadProtocolVersion, packets.ErrorRefusedIDRejected,
		packets.ErrorRefusedServerUnavailable, packets.ErrorRefusedBadUsernameOrPassword, packets.ErrorRefusedNotAuthorised} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

func isTLS(err error) bool {
	var rh tls.RecordHeaderError
	var ve *tls.CertificateVerificationError
	return errors.As(err, &rh) || errors.As(err, &ve)
}

// errText is err's text without paho's "network Error : " prefix.
func errText(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	const prefix = "network Error : "
	if len(s) > len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):]
	}
	return s
}
