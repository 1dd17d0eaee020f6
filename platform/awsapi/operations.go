package awsapi

import "context"

// CloseTunnel closes a tunnel (and deletes its record when in.Delete is set).
func (c *Client) CloseTunnel(ctx context.Context, in *CloseTunnelInput) error {
	return c.call(ctx, "CloseTunnel", in, nil)
}

// DescribeTunnel returns a tunnel's state.
func (c *Client) DescribeTunnel(ctx context.Context, in *DescribeTunnelInput) (*DescribeTunnelOutput, error) {
	out := new(DescribeTunnelOutput)
	if err := c.call(ctx, "DescribeTunnel", in, out); err != nil {
		return nil, err
	}
	return out, nil
}

// ListTunnels returns one page of tunnels, newest first.
func (c *Client) ListTunnels(ctx context.Context, in *ListTunnelsInput) (*ListTunnelsOutput, error) {
	out := new(ListTunnelsOutput)
	if err := c.call(ctx, "ListTunnels", in, out); err != nil {
		return nil, err
	}
	return out, nil
}

// ListAllTunnels follows nextToken until the last page or until limit summaries
// (limit <= 0: no limit).
func (c *Client) ListAllTunnels(ctx context.Context, thing string, limit int) ([]TunnelSummary, error) {
	var all []TunnelSummary
	in := &ListTunnelsInput{ThingName: thing, MaxResults: 100}
	for {
		page, err := c.ListTunnels(ctx, in)
		if err != nil {
			return all, err
		}
		all = append(all, page.TunnelSummaries...)
		if limit > 0 && len(all) >= limit {
			return all[:limit], nil
		}
		if page.NextToken == "" || page.NextToken == in.NextToken {
			return all, nil
		}
		in.NextToken = page.NextToken
	}
}

// RotateTunnelAccessToken revokes and replaces the token(s) of in.ClientMode.
func (c *Client) RotateTunnelAccessToken(ctx context.Context, in *RotateTunnelAccessTokenInput) (*RotateTunnelAccessTokenOutput, error) {
	out := new(RotateTunnelAccessTokenOutput)
	if err := c.call(ctx, "RotateTunnelAccessToken", in, out); err != nil {
		return nil, err
	}
	return out, nil
}

// TagResource adds or replaces tags on a tunnel ARN.
func (c *Client) TagResource(ctx context.Context, in *TagResourceInput) error {
	return c.call(ctx, "TagResource", in, nil)
}

// UntagResource removes tags (by key) from a tunnel ARN.
func (c *Client) UntagResource(ctx context.Context, in *UntagResourceInput) error {
	return c.call(ctx, "UntagResource", in, nil)
}

// ListTagsForResource returns the tags of a tunnel ARN.
func (c *Client) ListTagsForResource(ctx context.Context, in *ListTagsForResourceInput) (*ListTagsForResourceOutput, error) {
	out := new(ListTagsForResourceOutput)
	if err := c.call(ctx, "ListTagsForResource", in, out); err != nil {
		return nil, err
	}
	return out, nil
}
