package greengrass

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
)

// MaxConfigJSON bounds the component configuration accepted by NormalizeConfigJSON.
const MaxConfigJSON = 64 << 10

// NormalizeConfigJSON prepares the component configuration that the recipe
// hands to `tunnel-agent greengrass --config-json '{configuration:/agent}'`
// (the nucleus replaces an object node with its JSON) for the agent's YAML
// config parser: JSON is YAML, but the nucleus keeps configuration as JSON and
// may turn an integer into a float (10 -> 10.0), which an int field refuses.
// Numbers with an integral value are written back as integers; everything else,
// key names included, is kept as is, so unknown keys still fail in the parser.
// The input must be one JSON object.
func NormalizeConfigJSON(b []byte) ([]byte, error) {
	if len(b) > MaxConfigJSON {
		return nil, fmt.Errorf("%w: component configuration is %d bytes, limit %d", ErrConfig, len(b), MaxConfigJSON)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, fmt.Errorf("%w: component configuration is not a JSON object: %w "+
			"(check the recipe's Run line passes '{configuration:/agent}')", ErrConfig, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: component configuration has data after the JSON object", ErrConfig)
	}
	out, err := json.Marshal(integralNumbers(obj))
	if err != nil {
		return nil, fmt.Errorf("%w: re-encoding component configuration: %w", ErrConfig, err)
	}
	return out, nil
}

func integralNumbers(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = integralNumbers(e)
		}
	case []any:
		for i, e := range v {
			v[i] = integralNumbers(e)
		}
	case json.Number:
		f, err := strconv.ParseFloat(string(v), 64)
		if err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return json.Number(strconv.FormatInt(int64(f), 10))
		}
	}
	return v
}
