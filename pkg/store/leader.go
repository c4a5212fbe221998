package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// GetFromLeader reads key from bucket as its stream's leader has it. A KV
// Get is a direct get, which any replica may answer, and a replica a moment
// behind answers with what the leader has already replaced or purged. Where
// a decision rests on a key being gone (the presence sentinel after a loss),
// that stale answer is wrong: ask the leader. A missing key is
// jetstream.ErrKeyNotFound, a missing bucket jetstream.ErrStreamNotFound.
func GetFromLeader(ctx context.Context, js jetstream.JetStream, bucket, key string) ([]byte, error) {
	prefix := js.Options().APIPrefix
	if prefix == "" {
		prefix = jetstream.DefaultAPIPrefix
	}
	req, _ := json.Marshal(map[string]string{"last_by_subj": "$KV." + bucket + "." + key})
	msg, err := js.Conn().RequestWithContext(ctx, prefix+"STREAM.MSG.GET.KV_"+bucket, req)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Message *struct {
			Header []byte `json:"hdrs"`
			Data   []byte `json:"data"`
		} `json:"message"`
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, fmt.Errorf("store: get %s/%s from the leader: %w", bucket, key, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrCode == int(jetstream.JSErrCodeMessageNotFound):
		return nil, jetstream.ErrKeyNotFound
	case resp.Error != nil && resp.Error.ErrCode == int(jetstream.JSErrCodeStreamNotFound):
		return nil, jetstream.ErrStreamNotFound
	case resp.Error != nil:
		return nil, fmt.Errorf("store: get %s/%s from the leader: %s (%d)", bucket, key, resp.Error.Description, resp.Error.ErrCode)
	case resp.Message == nil:
		return nil, jetstream.ErrKeyNotFound
	}
	if len(resp.Message.Header) > 0 {
		if h, err := nats.DecodeHeadersMsg(resp.Message.Header); err == nil {
			if op := h.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
				return nil, jetstream.ErrKeyNotFound
			}
		}
	}
	return resp.Message.Data, nil
}
