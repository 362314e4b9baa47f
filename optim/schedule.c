/* Learning-rate schedules: an optional linear warm-up, then constant, cosine or step decay. */
#include <math.h>

#include "optim/optim.h"

float dml_schedule_lr(const dml_schedule *s, long step)
{
    if (step < s->warmup_steps)
        return s->lr * (float)(step + 1) / (float)s->warmup_steps;
    long t = step - s->warmup_steps;
    switch (s->kind) {
    case DML_SCHEDULE_CONSTANT:
        return s->lr;
    case DML_SCHEDULE_STEP:
        return s->step_every > 0 ? s->lr * powf(s->gamma, (float)(t / s->step_every)) : s->lr;
    case DML_SCHEDULE_COSINE: {
        long span = s->total_steps - s->warmup_steps;
        if (span <= 0)
            return s->lr;
        double progress = t >= span ? 1.0 : (double)t / (double)span;
        return s->lr_min + (s->lr - s->lr_min) * 0.5f * (float)(1.0 + cos(M_PI * progress));
    }
    }
    return s->lr;
}
