package protocol

import "regexp"

// regionRe is the shape of an AWS region name: a two-letter area, an
// optional partition marker (gov, iso, isob, isof, ...), a direction and a
// number: us-east-1, eu-central-2, ap-southeast-5, us-gov-west-1,
// cn-northwest-1, us-isob-east-1. The region becomes a label of the data
// endpoint (data.tunneling.iot.<region>.amazonaws.com), so nothing else is
// accepted from a notification.
var regionRe = regexp.MustCompile(`^[a-z]{2}(-gov|-iso[a-z]?)?-(central|north|south|east|west|northeast|northwest|southeast|southwest)-[1-9][0-9]?$`)

// ValidRegion reports whether s looks like an AWS region name.
func ValidRegion(s string) bool { return len(s) <= 32 && regionRe.MatchString(s) }
