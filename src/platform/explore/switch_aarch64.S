/* Fiber switch for AArch64 (AAPCS64, see fiber.h). Saves x19–x30 and d8–d15 on the current
 * stack, stores sp, loads the other sp and restores the same set from it.
 *
 *   void irpk_fiber_switch_asm(void **save_sp, void *new_sp);
 *   irpk_fiber_entry_asm: first return address (x30) of a new fiber; calls x19(x20) and never
 *   returns (the C entry point switches away for good instead). */
#if defined(__aarch64__) && !defined(IRPK_FIBER_UCONTEXT)
    .text
    .globl irpk_fiber_switch_asm
    .hidden irpk_fiber_switch_asm
    .type irpk_fiber_switch_asm, %function
    .p2align 2
irpk_fiber_switch_asm:
    sub sp, sp, #160
    stp x19, x20, [sp, #0]
    stp x21, x22, [sp, #16]
    stp x23, x24, [sp, #32]
    stp x25, x26, [sp, #48]
    stp x27, x28, [sp, #64]
    stp x29, x30, [sp, #80]
    stp d8, d9, [sp, #96]
    stp d10, d11, [sp, #112]
    stp d12, d13, [sp, #128]
    stp d14, d15, [sp, #144]
    mov x2, sp
    str x2, [x0]
    mov sp, x1
    ldp x19, x20, [sp, #0]
    ldp x21, x22, [sp, #16]
    ldp x23, x24, [sp, #32]
    ldp x25, x26, [sp, #48]
    ldp x27, x28, [sp, #64]
    ldp x29, x30, [sp, #80]
    ldp d8, d9, [sp, #96]
    ldp d10, d11, [sp, #112]
    ldp d12, d13, [sp, #128]
    ldp d14, d15, [sp, #144]
    add sp, sp, #160
    ret
    .size irpk_fiber_switch_asm, .-irpk_fiber_switch_asm

    .globl irpk_fiber_entry_asm
    .hidden irpk_fiber_entry_asm
    .type irpk_fiber_entry_asm, %function
    .p2align 2
irpk_fiber_entry_asm:
    mov x0, x20
    blr x19
    brk #0
    .size irpk_fiber_entry_asm, .-irpk_fiber_entry_asm
#endif
#if defined(__linux__) && defined(__ELF__)
    .section .note.GNU-stack,"",%progbits
#endif
