package emulator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
)

// awsJson1.1 protocol constants (protocol.md §7.1).
const (
	targetPrefix    = "IoTSecuredTunneling."
	jsonContentType = "application/x-amz-json-1.1"
	maxAPIBody      = 1 << 20
)

// request is a decoded API request that can check itself against the model.
type request interface{ validate() error }

// newRequest returns an empty request of the operation op, or nil when op
// is not an IoTSecuredTunneling operation.
func newRequest(op string) request {
	switch op {
	case "OpenTunnel":
		return &openTunnelRequest{}
	case "CloseTunnel":
		return &closeRequest{}
	case "DescribeTunnel":
		return &describeRequest{}
	case "ListTunnels":
		return &listRequest{}
	case "RotateTunnelAccessToken":
		return &rotateRequest{}
	case "TagResource":
		return &tagRequest{}
	case "UntagResource":
		return &untagRequest{}
	case "ListTagsForResource":
		return &arnRequest{}
	}
	return nil
}

// parseRequest checks the awsJson1.1 envelope (X-Amz-Target and
// Content-Type), decodes the body and validates it against the model.
func parseRequest(target, contentType string, body []byte) (request, error) {
	op, ok := strings.CutPrefix(target, targetPrefix)
	req := newRequest(op)
	if !ok || req == nil {
		return nil, &apiError{Status: http.StatusBadRequest, Type: codeUnknownOp,
			Message: "unknown operation in X-Amz-Target " + quoteShort(target) + ": expected IoTSecuredTunneling.<Operation>"}
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || mt != jsonContentType {
		return nil, &apiError{Status: http.StatusBadRequest, Type: codeUnknownOp,
			Message: "unsupported Content-Type " + quoteShort(contentType) + ": send " + jsonContentType}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	if err := decodeRequest(body, req); err != nil {
		return nil, err
	}
	if err := req.validate(); err != nil {
		return nil, err
	}
	return req, nil
}

func quoteShort(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return "'" + s + "'"
}

// serveAPI is the control-plane HTTP handler: POST / with awsJson1.1.
func (e *Emulator) serveAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Amzn-RequestId", newUUID())
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		writeAPIError(w, &apiError{Status: http.StatusNotFound, Type: codeUnknownOp,
			Message: "no operation at " + r.Method + " " + quoteShort(r.URL.Path) + ": send POST / with X-Amz-Target: IoTSecuredTunneling.<Operation>"})
		return
	}
	body, aerr := readBody(w, r)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	if aerr := e.authenticate(r, body); aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	req, err := parseRequest(r.Header.Get("X-Amz-Target"), r.Header.Get("Content-Type"), body)
	if err == nil {
		var resp any
		resp, err = e.execute(r.Context(), req)
		if err == nil {
			writeJSON(w, http.StatusOK, resp)
			return
		}
	}
	var ae *apiError
	if !errors.As(err, &ae) {
		e.log.Error("api operation failed", "error", err)
		ae = &apiError{Status: http.StatusInternalServerError, Type: codeInternalFailed, Message: "internal error; see the emulator log"}
	}
	writeAPIError(w, ae)
}

// readBody reads the request body, at most maxAPIBody bytes. A larger body
// is refused without reading it (the connection is then closed).
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	tooLarge := &apiError{Status: http.StatusRequestEntityTooLarge, Type: codeSerialization,
		Message: "the request body is larger than 1 MiB"}
	if r.ContentLength > maxAPIBody {
		w.Header().Set("Connection", "close")
		return nil, tooLarge
	}
	rd := http.MaxBytesReader(w, r.Body, maxAPIBody)
	var body []byte
	var err error
	if r.ContentLength >= 0 && r.ContentLength <= 64<<10 {
		// A small body of known length: one allocation of that size. A
		// larger one grows with what actually arrives, so a client that
		// announces 1 MiB and sends nothing does not hold 1 MiB.
		body = make([]byte, r.ContentLength)
		_, err = io.ReadFull(rd, body)
	} else {
		body, err = io.ReadAll(rd)
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, tooLarge
	case err != nil:
		return nil, &apiError{Status: http.StatusBadRequest, Type: codeSerialization,
			Message: "the request body could not be read (sent too slowly or cut off)"}
	}
	return body, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	var b []byte
	if err := enc.Encode(v); err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"__type":"InternalFailure","message":"encode response"}`)
	} else {
		b = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	}
	w.Header().Set("Content-Type", jsonContentType)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeAPIError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("X-Amzn-ErrorType", e.Type)
	writeJSON(w, e.Status, map[string]string{"__type": e.Type, "message": e.Message})
}

// execute runs one validated request.
func (e *Emulator) execute(ctx context.Context, req request) (any, error) {
	switch r := req.(type) {
	case *openTunnelRequest:
		return e.openTunnel(ctx, r)
	case *closeRequest:
		t, err := e.store.close(*r.TunnelID, r.Delete != nil && *r.Delete)
		if err != nil {
			return nil, err
		}
		t.relay.closeAll(closeNormal, "tunnel closed")
		return emptyResponse{}, nil
	case *describeRequest:
		t, err := e.store.describe(*r.TunnelID)
		return describeResponse{Tunnel: t}, err
	case *listRequest:
		return e.store.list(r)
	case *rotateRequest:
		return e.rotate(ctx, r)
	case *tagRequest:
		return emptyResponse{}, e.store.tagOp(*r.ResourceArn, true, func(t *tunnel) { t.tags = mergeTags(t.tags, *r.Tags) })
	case *untagRequest:
		return emptyResponse{}, e.store.tagOp(*r.ResourceArn, true, func(t *tunnel) {
			t.tags = slices.DeleteFunc(t.tags, func(tg Tag) bool { return slices.Contains(*r.TagKeys, tg.Key) })
		})
	case *arnRequest:
		var resp listTagsResponse
		err := e.store.tagOp(*r.ResourceArn, false, func(t *tunnel) { resp.Tags = append([]Tag{}, t.tags...) })
		return resp, err
	}
	return nil, errors.New("unhandled request type")
}

func (e *Emulator) openTunnel(ctx context.Context, r *openTunnelRequest) (any, error) {
	resp, err := e.store.open(r)
	if err != nil {
		return nil, err
	}
	var thing string
	var services []string
	if dc := r.DestinationConfig; dc != nil {
		services = *dc.Services
		if dc.ThingName != nil {
			thing = *dc.ThingName
		}
	}
	e.log.Info("tunnel opened", attrTunnel, resp.TunnelID, attrThing, thing, "services", services)
	if thing != "" {
		e.notifyDestination(ctx, resp.TunnelID, thing, resp.DestinationAccessToken, services)
	}
	return resp, nil
}

func (e *Emulator) rotate(ctx context.Context, r *rotateRequest) (any, error) {
	t, resp, err := e.store.rotate(r)
	if err != nil {
		return nil, err
	}
	e.log.Info("tokens rotated", attrTunnel, t.id, "mode", *r.ClientMode)
	if e.cfg.RotateDisconnects {
		if resp.SourceAccessToken != "" {
			t.relay.closeMode(modeSource, closeNormal, "access token rotated")
		}
		if resp.DestinationAccessToken != "" {
			t.relay.closeMode(modeDest, closeNormal, "access token rotated")
		}
	}
	if r.DestinationConfig != nil && r.DestinationConfig.ThingName != nil && resp.DestinationAccessToken != "" {
		e.notifyDestination(ctx, t.id, *r.DestinationConfig.ThingName, resp.DestinationAccessToken, *r.DestinationConfig.Services)
	}
	return resp, nil
}
