/* libFuzzer target: request validation. The input is a stream of frames (as a client would
 * send them); every frame that unpacks as a ClientMessage goes through srv_validate_request,
 * which must either refuse it with an Error code and a message, or produce a job whose fields
 * are within the server's limits. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "validate.h"

#define FUZZ_CHECK(c)                                                                  \
    do {                                                                               \
        if (!(c)) {                                                                    \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);      \
            abort();                                                                   \
        }                                                                              \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const srv_model_desc models[] = {{"tiny", 512, 2048}, {"q8", 2048, 512}};
static const srv_limits lim = {models, 2, 100, 256, 60};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    proto_decoder d;
    proto_decoder_init(&d, 64u * 1024u);
    while (size > 0) {
        size_t used = 0;
        proto_frame fr;
        int r = proto_decoder_feed(&d, data, size, &used, &fr);
        if (r < 0) break;
        data += used;
        size -= used;
        if (r != 1) continue;
        Llamad__V1__ClientMessage *m = NULL;
        if (proto_client_unpack(fr.data, fr.len, &m) != 0) continue;
        sched_job *job = NULL;
        char msg[512];
        msg[0] = '\0';
        int code = srv_validate_request(m, &lim, &job, msg, sizeof msg);
        if (code != 0) {
            FUZZ_CHECK(job == NULL);
            FUZZ_CHECK(msg[0] != '\0');
        } else if (job != NULL) {
            FUZZ_CHECK(job->model >= 0 && job->model < lim.n_models);
            if (job->kind == SCHED_JOB_GENERATE) {
                FUZZ_CHECK(job->max_tokens >= 1 && job->max_tokens <= lim.max_tokens);
                FUZZ_CHECK(job->n_completions >= 1 && job->n_completions <= SRV_MAX_COMPLETIONS);
                FUZZ_CHECK(job->n_stop >= 0 && job->n_stop <= SRV_MAX_STOPS);
                FUZZ_CHECK(job->n_tokens_in <= lim.max_prompt_tokens);
                for (int i = 0; i < job->n_tokens_in; i++)
                    FUZZ_CHECK(job->tokens_in[i] >= 0 && job->tokens_in[i] < models[job->model].n_vocab);
                FUZZ_CHECK(job->text == NULL || srv_utf8_valid(job->text, job->text_len));
            }
            sched_job_free(job);
        }
        proto_client_free(m);
    }
    proto_decoder_free(&d);
    return 0;
}
