package main

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

func TestFormatValue(t *testing.T) {
	tests := []struct {
		v    float64
		unit string
		want string
	}{
		{123.45e6, unitMBps, "123.5 MB/s"},
		{float64(250 * time.Microsecond), unitMicros, "250 µs"},
		{float64(5500 * time.Microsecond), unitMillis, "5.5 ms"},
		{12 << 20, unitMiB, "12.0 MiB"},
		{7_470_000, unitMB, "7.47 MB"},
		{1.234, unitCPUPerG, "1.23 s/GiB"},
		{math.NaN(), unitMBps, "–"},
	}
	for _, tt := range tests {
		if got := formatValue(tt.v, tt.unit); got != tt.want {
			t.Errorf("formatValue(%v, %s) = %q, want %q", tt.v, tt.unit, got, tt.want)
		}
	}
}

func TestMarkdownTable(t *testing.T) {
	rows := []row{
		{Section: secSize, Metric: "size", Unit: unitMB, Value: 5e6, Baseline: 4e6, BaselineLabel: "hello", Target: "< 10 MB", Status: statusPass},
		{Section: secThroughput, Metric: "bulk | pipe", Unit: unitMBps, Value: 100e6, Baseline: 400e6, Target: ">= 25%", Status: statusPass, Note: "n"},
		{Section: secMemory, Metric: "rss", Unit: unitMiB, Value: math.NaN(), Baseline: math.NaN(), Status: statusSkip},
	}
	sortRows(rows)
	got := markdownTable(rows)
	want := strings.Join([]string{
		"| Measurement | Value | Baseline (same run) | Ratio | Target | Result |",
		"|---|---:|---:|---:|---|:---:|",
		`| bulk \| pipe (n) | 100.0 MB/s | 400.0 MB/s | 0.25× | >= 25% | PASS |`,
		"| rss | – | – | – |  | SKIP |",
		"| size | 5.00 MB | 4.00 MB hello | 1.25× | < 10 MB | PASS |",
	}, "\n") + "\n"
	if got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

func TestRowJSON(t *testing.T) {
	b, err := json.Marshal(row{Metric: "m", Unit: unitMBps, Value: 2, Baseline: 4})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got["ratio"] != 0.5 || got["value"] != 2.0 {
		t.Errorf("json %s: want value 2, ratio 0.5", b)
	}
	b, err = json.Marshal(row{Metric: "m", Value: math.NaN(), Baseline: math.NaN()})
	if err != nil {
		t.Fatalf("NaN row: %v", err)
	}
	if !strings.Contains(string(b), `"value":null`) || !strings.Contains(string(b), `"ratio":null`) {
		t.Errorf("NaN not written as null: %s", b)
	}
}

func TestJudge(t *testing.T) {
	if judge(1, true) != statusPass || judge(1, false) != statusMiss || judge(math.NaN(), true) != statusSkip {
		t.Error("judge")
	}
}
